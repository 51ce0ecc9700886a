/*
 * query.c - user-level DP statistics over the store (privguide/query.h).
 *
 * One pass over the users (decrypted one at a time, analytics consent
 * required). Per user, events are filtered by type, mapped to a group key
 * and bounded: the first max_contributions events per group (time order),
 * the max_groups groups where the user has the most events, values clamped. The bounded per-user
 * aggregates are added to per-group totals (count, sum, distinct users).
 * Then: partition selection for grouped outputs, calibrated noise for the
 * values (one plan per query), the ledger charge, and only then the result.
 *
 * Shapes: groups are kept in an open-addressing hash table keyed by string
 * (capacity a power of two, load <= 1/2); each group remembers the user pass
 * that last touched it and that user's slot, so a user's events are bounded
 * in O(1) per event.
 */
#include <privguide/query.h>

#include <privguide/dp.h>
#include <privguide/ledger.h>
#include <privguide/release.h>

#include "dp/dp_internal.h"
#include "dp/query_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- names ---- */

static const char *const kind_names[] = {"count",    "sum",       "mean",
                                         "quantile", "histogram", "top-items"};
static const char *const group_names[] = {"none", "category", "item", "country", "day"};

pvg_status pvg_query_kind_parse(const char *name, pvg_query_kind *out)
{
    for (int i = 0; i < 6; i++)
        if (name && strcmp(name, kind_names[i]) == 0) {
            *out = (pvg_query_kind)i;
            return PVG_OK;
        }
    return PVG_ERR_INVALID;
}

const char *pvg_query_kind_name(pvg_query_kind k)
{
    return (unsigned)k < 6 ? kind_names[k] : "?";
}

pvg_status pvg_query_group_parse(const char *name, pvg_query_group *out)
{
    for (int i = 0; i < 5; i++)
        if (name && strcmp(name, group_names[i]) == 0) {
            *out = (pvg_query_group)i;
            return PVG_OK;
        }
    return PVG_ERR_INVALID;
}

const char *pvg_query_group_name(pvg_query_group g)
{
    return (unsigned)g < 5 ? group_names[g] : "?";
}

void pvg_query_spec_init(pvg_query_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    spec->kind = PVG_QUERY_COUNT;
    spec->event_type = PVG_EVENT_PURCHASE;
    spec->value = PVG_QUERY_VALUE_QUANTITY;
    spec->group_by = PVG_QUERY_GROUP_NONE;
    spec->quantile = 0.5;
}

/* ---- sensitivities: the one place each is derived ----
 *
 * Neighbouring datasets differ by all the records of one shopper. After the
 * contribution bounds (user_cb) a shopper touches at most G groups and keeps
 * at most m events in each; what the shopper adds to a group depends only on
 * the shopper's own events, so adding the shopper moves at most G coordinates
 * of the released vector, each by at most per_group. Then
 *   L1 <= per_group * G,   L2 <= per_group * sqrt(G),
 * and both are attained by a shopper with the worst-case contribution in G
 * groups (tests/test_dp_query.c adds one and measures the move). */

static pvg_query_sensitivity sens_make(double per_group, long G)
{
    pvg_query_sensitivity s;
    s.per_group = per_group;
    s.groups = G;
    s.l1 = per_group * (double)G;
    s.l2 = per_group * sqrt((double)G);
    return s;
}

/* Count (and histogram bins): a group's count is the number of kept events,
 * at most m per shopper: per_group = m (attained with m events). */
pvg_query_sensitivity pvg_query_sensitivity_count(long m, long G)
{
    return sens_make((double)m, G);
}

/* Sum of values: a shopper adds the sum of at most m values, each in
 * [lo, hi], to a group: |added| <= m max(|lo|, |hi|) (attained with m events
 * at the end of the clamp range farther from 0). */
pvg_query_sensitivity pvg_query_sensitivity_sum_values(long m, long G, double lo, double hi)
{
    return sens_make((double)m * fmax(fabs(lo), fabs(hi)), G);
}

/* Sum with --value events: a shopper who touches a group keeps c events
 * there, 1 <= c <= m, and adds clamp(c, lo, hi). clamp is monotone in c, so
 * the extremes are at c = 1 and c = m: per_group = max(|clamp(1)|, |clamp(m)|).
 * (The old bound min(m, hi) ignored lo: with --clamp 100:200 one shopper adds
 * 100 to 200, not 10.) */
pvg_query_sensitivity pvg_query_sensitivity_sum_events(long m, long G, double lo, double hi)
{
    double c1 = fmin(fmax(1.0, lo), hi), cm = fmin(fmax((double)m, lo), hi);
    return sens_make(fmax(fabs(c1), fabs(cm)), G);
}

/* Distinct users per group: a shopper adds 1 to each of at most G groups. */
pvg_query_sensitivity pvg_query_sensitivity_users(long G)
{
    return sens_make(1.0, G);
}

/* ---- hash tables ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

typedef struct grp {
    char *key;
    double count, sum;
    long long users;
    long long stamp; /* the user pass that last touched the group */
    long slot;       /* that user's local slot for it */
} grp;

typedef struct gtable {
    int32_t *slots; /* index into g, -1 empty */
    size_t cap;
    grp *g;
    size_t n, gcap;
} gtable;

static int gt_grow(gtable *t)
{
    size_t ncap = t->cap ? t->cap * 2 : 64;
    int32_t *ns = malloc(ncap * sizeof *ns);
    if (!ns) return -1;
    for (size_t i = 0; i < ncap; i++)
        ns[i] = -1;
    for (size_t i = 0; i < t->n; i++) {
        size_t h = (size_t)hash_str(t->g[i].key) & (ncap - 1);
        while (ns[h] >= 0)
            h = (h + 1) & (ncap - 1);
        ns[h] = (int32_t)i;
    }
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
    return 0;
}

/* index of key, inserting when absent; -1 on out of memory */
static long gt_get(gtable *t, const char *key)
{
    if (2 * (t->n + 1) > t->cap && gt_grow(t)) return -1;
    size_t h = (size_t)hash_str(key) & (t->cap - 1);
    while (t->slots[h] >= 0) {
        if (strcmp(t->g[t->slots[h]].key, key) == 0) return t->slots[h];
        h = (h + 1) & (t->cap - 1);
    }
    if (t->n == t->gcap) {
        size_t nc = t->gcap ? t->gcap * 2 : 64;
        grp *ng = realloc(t->g, nc * sizeof *ng);
        if (!ng) return -1;
        t->g = ng;
        t->gcap = nc;
    }
    char *k = strdup(key);
    if (!k) return -1;
    t->g[t->n] = (grp){k, 0, 0, 0, 0, 0};
    t->slots[h] = (int32_t)t->n;
    return (long)t->n++;
}

static void gt_free(gtable *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->g[i].key);
    free(t->g);
    free(t->slots);
}

/* item id -> category */
typedef struct catmap {
    int64_t *ids;
    char **cats;
    long *gidx; /* group index of the slot's category, -1 until first used */
    size_t cap, n;
} catmap;

static int cm_put(catmap *m, int64_t id, const char *cat)
{
    if (2 * (m->n + 1) > m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 1024;
        int64_t *ni = malloc(nc * sizeof *ni);
        char **nca = calloc(nc, sizeof *nca);
        if (!ni || !nca) {
            free(ni);
            free(nca);
            return -1;
        }
        for (size_t i = 0; i < nc; i++)
            ni[i] = 0;
        for (size_t i = 0; i < m->cap; i++)
            if (m->ids[i]) {
                size_t h = (size_t)((uint64_t)m->ids[i] * 0x9E3779B97F4A7C15ull) & (nc - 1);
                while (ni[h])
                    h = (h + 1) & (nc - 1);
                ni[h] = m->ids[i];
                nca[h] = m->cats[i];
            }
        free(m->ids);
        free(m->cats);
        m->ids = ni;
        m->cats = nca;
        m->cap = nc;
    }
    size_t h = (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull) & (m->cap - 1);
    while (m->ids[h] && m->ids[h] != id)
        h = (h + 1) & (m->cap - 1);
    if (!m->ids[h])
        m->n++;
    else
        free(m->cats[h]);
    m->ids[h] = id;
    m->cats[h] = strdup(cat ? cat : "(none)");
    return m->cats[h] ? 0 : -1;
}

static const char *cm_get(const catmap *m, int64_t id)
{
    if (!m->cap || id == 0) return "(none)";
    size_t h = (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull) & (m->cap - 1);
    while (m->ids[h]) {
        if (m->ids[h] == id) return m->cats[h];
        h = (h + 1) & (m->cap - 1);
    }
    return "(none)";
}

/* slot of an item id, or -1 */
static long cm_slot(const catmap *m, int64_t id)
{
    if (!m->cap || id == 0) return -1;
    size_t h = (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull) & (m->cap - 1);
    while (m->ids[h]) {
        if (m->ids[h] == id) return (long)h;
        h = (h + 1) & (m->cap - 1);
    }
    return -1;
}

static void cm_free(catmap *m)
{
    free(m->gidx);
    for (size_t i = 0; i < m->cap; i++)
        free(m->cats[i]);
    free(m->ids);
    free(m->cats);
}

static int cm_item_cb(void *ctx, const pvg_item *it)
{
    return cm_put(ctx, it->id, it->category && *it->category ? it->category : "(none)") ? 1 : 0;
}

/* ---- the pass over users ---- */

typedef struct uslot {
    long g;     /* group index */
    long n;     /* events taken (at most max_contributions) */
    long total; /* events seen in the group */
    long first; /* order of first appearance */
    double sum; /* clamped values taken */
} uslot;

typedef struct qctx {
    const pvg_query_spec *sp;
    long m, G;
    catmap cats;
    gtable gt;
    uslot *slots;
    size_t slots_cap;
    double *vals; /* quantile */
    size_t nv, vcap;
    long long users;
    int oom;
    int cat_fast; /* category grouping with the item -> group cache */
    char keybuf[64];
} qctx;

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static const char *group_key(qctx *q, const pvg_event *e, double v)
{
    const pvg_query_spec *sp = q->sp;
    if (sp->kind == PVG_QUERY_HISTOGRAM) {
        int b = (int)floor((v - sp->clamp_lo) / (sp->clamp_hi - sp->clamp_lo) * sp->bins);
        if (b >= sp->bins) b = sp->bins - 1;
        if (b < 0) b = 0;
        snprintf(q->keybuf, sizeof q->keybuf, "%06d", b);
        return q->keybuf;
    }
    switch (sp->kind == PVG_QUERY_TOP_ITEMS ? PVG_QUERY_GROUP_ITEM : sp->group_by) {
    case PVG_QUERY_GROUP_NONE:
        return "";
    case PVG_QUERY_GROUP_CATEGORY:
        return cm_get(&q->cats, e->item_id);
    case PVG_QUERY_GROUP_ITEM:
        return e->item ? e->item : "(none)";
    case PVG_QUERY_GROUP_COUNTRY:
        return (e->fields & PVG_FIELD_COUNTRY) && e->country ? e->country : "(unknown)";
    case PVG_QUERY_GROUP_DAY: {
        time_t t = (time_t)e->ts;
        struct tm tmv;
        gmtime_r(&t, &tmv);
        strftime(q->keybuf, sizeof q->keybuf, "%Y-%m-%d", &tmv);
        return q->keybuf;
    }
    }
    return "";
}

/* keep the groups where the user has the most events (first seen first on ties) */
static int cmp_slot(const void *a, const void *b)
{
    const uslot *x = a, *y = b;
    if (x->total != y->total) return x->total < y->total ? 1 : -1;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* Bounds one user's contribution: per group at most m events (the first in
 * time order), then at most G groups (those where the user has the most
 * events). Both choices depend on this user's own data only, so the
 * per-user bound on the aggregates - and the sensitivity - holds. */
static int user_cb(void *ctx, const pvg_user_view *u, const pvg_event *ev, size_t n)
{
    qctx *q = ctx;
    const pvg_query_spec *sp = q->sp;
    long long stamp = ++q->users;
    size_t used = 0;
    int need_value = sp->value != PVG_QUERY_VALUE_EVENTS &&
                     (sp->kind == PVG_QUERY_SUM || sp->kind == PVG_QUERY_MEAN ||
                      sp->kind == PVG_QUERY_QUANTILE || sp->kind == PVG_QUERY_HISTOGRAM);
    unsigned field = sp->value == PVG_QUERY_VALUE_AMOUNT ? PVG_FIELD_AMOUNT : PVG_FIELD_QUANTITY;
    for (size_t i = 0; i < n; i++) {
        const pvg_event *e = &ev[i];
        if (sp->event_type >= 0 && (int)e->type != sp->event_type) continue;
        double v = 0;
        if (need_value) {
            if (!(e->fields & field)) continue;
            v = clampd(field == PVG_FIELD_AMOUNT ? e->amount : e->quantity, sp->clamp_lo,
                       sp->clamp_hi);
        }
        long g;
        long cs = q->cat_fast ? cm_slot(&q->cats, e->item_id) : -1;
        if (cs >= 0) { /* category grouping: item -> group index cached */
            if (q->cats.gidx[cs] < 0) q->cats.gidx[cs] = gt_get(&q->gt, q->cats.cats[cs]);
            g = q->cats.gidx[cs];
        } else {
            g = gt_get(&q->gt, group_key(q, e, v));
        }
        if (g < 0) {
            q->oom = 1;
            return 1;
        }
        grp *gg = &q->gt.g[g];
        if (gg->stamp != stamp) {
            if (used == q->slots_cap) {
                size_t nc = q->slots_cap ? 2 * q->slots_cap : 64;
                uslot *ns = realloc(q->slots, nc * sizeof *ns);
                if (!ns) {
                    q->oom = 1;
                    return 1;
                }
                q->slots = ns;
                q->slots_cap = nc;
            }
            gg->stamp = stamp;
            gg->slot = (long)used;
            q->slots[used] = (uslot){g, 0, 0, (long)used, 0};
            used++;
        }
        uslot *sl = &q->slots[gg->slot];
        sl->total++;
        if (sl->n >= q->m) continue;
        sl->n++;
        sl->sum += v;
        if (sp->kind == PVG_QUERY_QUANTILE) { /* ungrouped: one group, kept */
            if (q->nv == q->vcap) {
                size_t nc = q->vcap ? q->vcap * 2 : 4096;
                double *nvv = realloc(q->vals, nc * sizeof *nvv);
                if (!nvv) {
                    q->oom = 1;
                    return 1;
                }
                q->vals = nvv;
                q->vcap = nc;
            }
            q->vals[q->nv++] = v;
        }
    }
    if (used > (size_t)q->G) {
        qsort(q->slots, used, sizeof *q->slots, cmp_slot);
        used = (size_t)q->G;
    }
    for (size_t k = 0; k < used; k++) {
        grp *g = &q->gt.g[q->slots[k].g];
        g->users++;
        g->count += (double)q->slots[k].n;
        if (sp->value == PVG_QUERY_VALUE_EVENTS) {
            double c = (double)q->slots[k].n;
            g->sum += sp->has_clamp ? clampd(c, sp->clamp_lo, sp->clamp_hi) : c;
        } else {
            g->sum += q->slots[k].sum;
        }
    }
    (void)u;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_row_group(const void *a, const void *b)
{
    const pvg_query_row *x = a, *y = b;
    return strcmp(x->group ? x->group : "", y->group ? y->group : "");
}

static int cmp_row_value_desc(const void *a, const void *b)
{
    const pvg_query_row *x = a, *y = b;
    if (x->value != y->value) return x->value < y->value ? 1 : -1;
    return strcmp(x->group, y->group);
}

void pvg_query_result_free(pvg_query_result *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_rows; i++)
        free((char *)r->rows[i].group);
    free(r->rows);
    free(r);
}

static pvg_status spec_check(pvg_query_spec *sp, pvg_error *err)
{
    const char *src = "query";
    if (!(sp->epsilon > 0) || isinf(sp->epsilon))
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1,
                                "--epsilon must be > 0, got %g", sp->epsilon);
    if (!(sp->delta >= 0 && sp->delta < 1))
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1,
                                "--delta must be in [0, 1), got %g", sp->delta);
    if ((unsigned)sp->kind > PVG_QUERY_TOP_ITEMS || (unsigned)sp->group_by > PVG_QUERY_GROUP_DAY)
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1,
                                "unknown query kind or grouping");
    if (sp->event_type >= PVG_EVENT_TYPE_COUNT)
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1, "unknown event type %d",
                                sp->event_type);
    int grouped = sp->kind == PVG_QUERY_TOP_ITEMS ||
                  (sp->group_by != PVG_QUERY_GROUP_NONE && sp->kind != PVG_QUERY_HISTOGRAM);
    if (sp->max_contributions == 0) sp->max_contributions = 10;
    if (sp->max_groups == 0) sp->max_groups = (grouped || sp->kind == PVG_QUERY_HISTOGRAM) ? 5 : 1;
    if (sp->max_contributions < 1 || sp->max_contributions > 1000000)
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1,
                                "--max-contributions must be in [1, 10^6]");
    if (sp->max_groups < 1 || sp->max_groups > 100000)
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1,
                                "--max-groups must be in [1, 10^5]");
    if (!grouped && sp->kind != PVG_QUERY_HISTOGRAM) sp->max_groups = 1;
    if (sp->kind == PVG_QUERY_QUANTILE && sp->group_by != PVG_QUERY_GROUP_NONE)
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1,
                                "quantile does not support --group-by");
    if (sp->kind == PVG_QUERY_HISTOGRAM && sp->group_by != PVG_QUERY_GROUP_NONE)
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1,
                                "histogram groups by value bins; drop --group-by");
    if ((sp->kind == PVG_QUERY_QUANTILE || sp->kind == PVG_QUERY_HISTOGRAM) &&
        sp->value == PVG_QUERY_VALUE_EVENTS)
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1,
                                "%s needs --value quantity or amount",
                                pvg_query_kind_name(sp->kind));
    int needs_clamp = (sp->kind == PVG_QUERY_SUM || sp->kind == PVG_QUERY_MEAN ||
                       sp->kind == PVG_QUERY_QUANTILE || sp->kind == PVG_QUERY_HISTOGRAM) &&
                      sp->value != PVG_QUERY_VALUE_EVENTS;
    if (sp->kind == PVG_QUERY_QUANTILE || sp->kind == PVG_QUERY_HISTOGRAM) needs_clamp = 1;
    if (needs_clamp && !sp->has_clamp)
        return pvg_error_set_at(
            err, PVG_ERR_INVALID, src, 0, 0, -1,
            "--clamp LO:HI is required for %s of %s (contributions must be bounded)",
            pvg_query_kind_name(sp->kind),
            sp->value == PVG_QUERY_VALUE_AMOUNT   ? "amount"
            : sp->value == PVG_QUERY_VALUE_EVENTS ? "events"
                                                  : "quantity");
    if (sp->has_clamp &&
        !(sp->clamp_lo < sp->clamp_hi && isfinite(sp->clamp_lo) && isfinite(sp->clamp_hi)))
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1,
                                "--clamp needs finite LO < HI");
    if (sp->value == PVG_QUERY_VALUE_EVENTS && !sp->has_clamp) {
        sp->has_clamp = 1;
        sp->clamp_lo = 0;
        sp->clamp_hi = (double)sp->max_contributions;
    }
    /* q = 0 or 1 is refused, never silently replaced (0 used to mean "the
     * default", so --quantile 0 became the median) */
    if (sp->kind == PVG_QUERY_QUANTILE && !(sp->quantile > 0 && sp->quantile < 1))
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1,
                                "--quantile must be in (0, 1), bounds excluded, got %g",
                                sp->quantile);
    if (sp->bins == 0) sp->bins = 10;
    if (sp->bins < 1 || sp->bins > 10000)
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1,
                                "--bins must be in [1, 10000]");
    if (sp->top == 0) sp->top = 10;
    if (sp->top < 1)
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1, "--top must be >= 1");
    if (grouped && sp->kind != PVG_QUERY_TOP_ITEMS && !(sp->delta > 0))
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1,
                                "grouped queries need --delta > 0 (partition selection releases a "
                                "group only when enough users support it)");
    if (sp->noise == PVG_QUERY_NOISE_GAUSSIAN && !(sp->delta > 0))
        return pvg_error_set_at(err, PVG_ERR_INVALID, src, 0, 0, -1,
                                "Gaussian noise needs --delta > 0");
    return PVG_OK;
}

/* ---- top-items: a DP top-k over the public catalog (release.h) ---------- */
/*
 * The candidates are the catalog as loaded by the operator (pvg_item.catalog;
 * never the stubs events create, so the released set reveals nothing by its
 * membership); each shopper's distinct catalog items (of the event type)
 * are bounded to G = max_groups (a random subset when more), every
 * candidate's bounded distinct-shopper count gets noise, and the top
 * `top` noisy counts are released. One shopper moves at most G counts, each
 * by 1: pvg_query_sensitivity_users(G), L1 = G (discrete Laplace, b =
 * G / epsilon) or L2 = sqrt(G) (discrete Gaussian over the whole vector,
 * zCDP). No partition selection is needed: the domain is public.
 */
typedef struct ti_ctx {
    const pvg_query_spec *sp;
    pvg_dp_item_counts *c;
    pvg_rng *rng;
    int64_t *ids; /* catalog row ids, ascending */
    char **ext;
    size_t n, cap;
    int64_t *buf;
    long long *stamp;
    size_t buf_cap;
    long long users;
    int by_name; /* in-memory data without a catalog: candidates by ext id (ids[i] = i + 1) */
    pvg_status st;
    pvg_error *err;
} ti_ctx;

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ti_item(void *ctx, const pvg_item *it)
{
    ti_ctx *t = ctx;
    if (!it->catalog) return 0;
    if (t->n == t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 256;
        int64_t *ni = realloc(t->ids, nc * sizeof *ni);
        if (!ni) return 1;
        t->ids = ni;
        char **ne = realloc(t->ext, nc * sizeof *ne);
        if (!ne) return 1;
        t->ext = ne;
        t->cap = nc;
    }
    t->ext[t->n] = strdup(it->ext_id);
    if (!t->ext[t->n]) return 1;
    t->ids[t->n++] = it->id;
    return 0;
}

static long ti_find(const ti_ctx *t, int64_t id)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n && t->ids[lo] == id ? (long)lo : -1;
}

static int ti_user(void *ctx, const pvg_user_view *u, const pvg_event *ev, size_t n)
{
    (void)u;
    ti_ctx *t = ctx;
    long long me = ++t->users;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->sp->event_type >= 0 && (int)ev[i].type != t->sp->event_type) continue;
        long j = -1;
        if (t->by_name && ev[i].item) {
            const char *key = ev[i].item;
            char **hit = bsearch(&key, t->ext, t->n, sizeof *t->ext, cmp_strp);
            j = hit ? (long)(hit - t->ext) : -1;
        } else if (!t->by_name && ev[i].item_id > 0) {
            j = ti_find(t, ev[i].item_id);
        }
        if (j < 0 || t->stamp[j] == me) continue;
        t->stamp[j] = me;
        t->buf[k++] = t->ids[j];
    }
    t->st = pvg_dp_item_counts_add_user(t->c, t->rng, t->buf, k, t->err);
    return t->st != PVG_OK;
}

/* The candidates of in-memory data (query_run_mem, the release audits):
 * the catalog given, else the items the data names - the same set on both
 * neighbouring datasets of an audit, never a store's release. */
static pvg_status ti_mem_domain(ti_ctx *t, const query_mem *mem, pvg_error *err)
{
    for (size_t i = 0; i < mem->n_items; i++) {
        pvg_item it = mem->items[i];
        it.catalog = 1; /* the caller's catalog */
        if (ti_item(t, &it)) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    if (mem->n_items) { /* row-id order, as the store hands them (ti_find bisects) */
        for (size_t i = 1; i < t->n; i++)
            for (size_t j = i; j > 0 && t->ids[j - 1] > t->ids[j]; j--) {
                int64_t x = t->ids[j];
                t->ids[j] = t->ids[j - 1];
                t->ids[j - 1] = x;
                char *e = t->ext[j];
                t->ext[j] = t->ext[j - 1];
                t->ext[j - 1] = e;
            }
        return PVG_OK;
    }
    t->by_name = 1;
    for (size_t u = 0; u < mem->n_users; u++)
        for (size_t i = 0; i < mem->users[u].n; i++) {
            const char *name = mem->users[u].events[i].item;
            if (!name) continue;
            int seen = 0;
            for (size_t j = 0; j < t->n && !seen; j++)
                seen = strcmp(t->ext[j], name) == 0;
            if (seen) continue;
            pvg_item it = {0};
            it.ext_id = name;
            it.catalog = 1;
            if (ti_item(t, &it)) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        }
    qsort(t->ext, t->n, sizeof *t->ext, cmp_strp);
    for (size_t j = 0; j < t->n; j++)
        t->ids[j] = (int64_t)j + 1;
    return PVG_OK;
}

static pvg_status top_items_run(pvg_store *s, const query_mem *mem, const pvg_query_spec *sp,
                                pvg_rng *rng, pvg_query_result *r, pvg_error *err)
{
    ti_ctx t;
    memset(&t, 0, sizeof t);
    t.sp = sp;
    t.rng = rng;
    t.err = err;
    pvg_dp_popular *rel = NULL;
    pvg_status st =
        mem ? ti_mem_domain(&t, mem, err) : pvg_store_items_foreach(s, ti_item, &t, err);
    if (st == PVG_ERR_ABORTED) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (st == PVG_OK && t.n == 0)
        st = pvg_error_set(err, PVG_ERR_INVALID,
                           "top-items: the store has no catalog items (the public domain of the "
                           "release); import the catalog first");
    if (st == PVG_OK) {
        t.buf = malloc(t.n * sizeof *t.buf);
        t.stamp = calloc(t.n, sizeof *t.stamp);
        if (!t.buf || !t.stamp) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    int gauss = sp->noise == PVG_QUERY_NOISE_GAUSSIAN;
    if (st == PVG_OK) st = pvg_dp_item_counts_new(t.ids, t.n, sp->max_groups, &t.c, err);
    if (st == PVG_OK && mem) {
        for (size_t u = 0; u < mem->n_users && st == PVG_OK; u++)
            if (ti_user(&t, NULL, mem->users[u].events, mem->users[u].n)) st = t.st;
    } else if (st == PVG_OK) {
        st = pvg_store_foreach_user(s, PVG_FOREACH_REQUIRE_ANALYTICS, ti_user, &t, err);
        if (st == PVG_ERR_ABORTED) st = t.st;
    }
    if (st == PVG_OK) {
        pvg_dp_popular_params pp;
        pvg_dp_popular_params_init(&pp);
        pp.epsilon = sp->epsilon;
        pp.delta = gauss ? sp->delta : 0;
        pp.k = (size_t)sp->top < t.n ? (size_t)sp->top : t.n;
        pp.mechanism = gauss ? PVG_DP_RELEASE_GAUSSIAN : PVG_DP_RELEASE_LAPLACE;
        pp.allow_insecure_rng = sp->allow_insecure_rng;
        st = pvg_dp_popular_release(t.c, rng, &pp, &rel, err);
    }
    if (st == PVG_OK) {
        pvg_query_sensitivity us = pvg_query_sensitivity_users(sp->max_groups);
        r->rows = calloc(rel->n ? rel->n : 1, sizeof *r->rows);
        if (!r->rows) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        double hw = gauss ? 1.959963984540054 * rel->info.noise_scale
                          : lap_ci95_public(rel->info.noise_scale);
        for (size_t i = 0; st == PVG_OK && i < rel->n; i++) {
            pvg_query_row *row = &r->rows[r->n_rows];
            row->group = strdup(t.ext[ti_find(&t, rel->items[i].item)]);
            if (!row->group) {
                st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
                break;
            }
            row->value = row->count = (double)rel->items[i].noisy_count;
            row->ci_lo = row->value - hw;
            row->ci_hi = row->value + hw;
            r->n_rows++;
        }
        r->users = t.users;
        r->groups_seen = (long long)t.n;
        r->sensitivity = gauss ? us.l2 : us.l1;
        r->noise_scale = rel->info.noise_scale;
        r->mechanism = rel->info.mechanism;
        r->epsilon = rel->info.epsilon;
        r->delta = rel->info.delta;
    }
    pvg_dp_popular_free(rel);
    pvg_dp_item_counts_free(t.c);
    for (size_t i = 0; i < t.n; i++)
        free(t.ext[i]);
    free(t.ext);
    free(t.ids);
    free(t.buf);
    free(t.stamp);
    return st;
}

/* The users and the catalog of a query: the store's, or those in memory
 * (query_run_mem) handed to the same callbacks in the same order. */
static pvg_status src_items(pvg_store *s, const query_mem *mem, catmap *cats, pvg_error *err)
{
    if (!mem) return pvg_store_items_foreach(s, cm_item_cb, cats, err);
    for (size_t i = 0; i < mem->n_items; i++)
        if (cm_item_cb(cats, &mem->items[i]))
            return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    return PVG_OK;
}

static pvg_status src_users(pvg_store *s, const query_mem *mem, qctx *q, pvg_error *err)
{
    if (!mem) return pvg_store_foreach_user(s, PVG_FOREACH_REQUIRE_ANALYTICS, user_cb, q, err);
    for (size_t i = 0; i < mem->n_users; i++)
        if (user_cb(q, NULL, mem->users[i].events, mem->users[i].n)) return PVG_ERR_ABORTED;
    return PVG_OK;
}

static pvg_status query_run_from(pvg_store *s, const query_mem *mem, const pvg_query_spec *spec_in,
                                 pvg_rng *rng, pvg_query_result **out, pvg_error *err);

pvg_status pvg_query_run(pvg_store *s, const pvg_query_spec *spec_in, pvg_rng *rng,
                         pvg_query_result **out, pvg_error *err)
{
    return query_run_from(s, NULL, spec_in, rng, out, err);
}

pvg_status query_run_mem(const query_mem *mem, const pvg_query_spec *spec, pvg_rng *rng,
                         pvg_query_result **out, pvg_error *err)
{
    *out = NULL;
    if (!mem) return pvg_error_set(err, PVG_ERR_INVALID, "no data");
    return query_run_from(NULL, mem, spec, rng, out, err);
}

static pvg_status query_run_from(pvg_store *s, const query_mem *mem, const pvg_query_spec *spec_in,
                                 pvg_rng *rng, pvg_query_result **out, pvg_error *err)
{
    pvg_status st;
    pvg_query_spec spv = *spec_in, *sp = &spv;
    *out = NULL;
    if ((st = spec_check(sp, err)) != PVG_OK) return st;
    if ((st = dp_check_rng(rng, sp->allow_insecure_rng, err)) != PVG_OK) return st;
    int grouped = sp->kind == PVG_QUERY_TOP_ITEMS ||
                  (sp->group_by != PVG_QUERY_GROUP_NONE && sp->kind != PVG_QUERY_HISTOGRAM);

    qctx q;
    memset(&q, 0, sizeof q);
    q.sp = sp;
    q.m = sp->max_contributions;
    q.G = sp->max_groups;
    pvg_query_result *r = calloc(1, sizeof *r);
    if (!r) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (sp->kind == PVG_QUERY_TOP_ITEMS) {
        r->max_contributions = 1; /* one per (shopper, item): distinct shoppers */
        r->max_groups = sp->max_groups;
        st = top_items_run(s, mem, sp, rng, r, err);
        if (st == PVG_OK && !mem) { /* in memory: the caller (the audit) accounts for it */
            const char *tn =
                sp->event_type >= 0 ? pvg_event_type_name((pvg_event_type)sp->event_type) : "all";
            if (sp->what)
                snprintf(r->what, sizeof r->what, "%s", sp->what);
            else
                snprintf(r->what, sizeof r->what, "query top-items of %s events (catalog items)",
                         tn);
            st =
                pvg_ledger_charge(s, sp->dataset ? sp->dataset : PVG_LEDGER_DEFAULT_DATASET,
                                  r->what, r->mechanism, r->epsilon, r->delta, &r->release_id, err);
        }
        if (st != PVG_OK) {
            pvg_query_result_free(r);
            return st;
        }
        *out = r;
        return PVG_OK;
    }
    if (sp->group_by == PVG_QUERY_GROUP_CATEGORY && sp->kind != PVG_QUERY_TOP_ITEMS &&
        sp->kind != PVG_QUERY_HISTOGRAM) {
        st = src_items(s, mem, &q.cats, err);
        if (st != PVG_OK) goto done;
        if (q.cats.cap) {
            q.cats.gidx = malloc(q.cats.cap * sizeof *q.cats.gidx);
            if (!q.cats.gidx) {
                st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
                goto done;
            }
            for (size_t i = 0; i < q.cats.cap; i++)
                q.cats.gidx[i] = -1;
            q.cat_fast = 1;
        }
    }
    st = src_users(s, mem, &q, err);
    if (q.oom) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory while aggregating");
    if (st != PVG_OK) goto done;
    r->users = q.users;
    r->groups_seen = (long long)q.gt.n;
    r->max_contributions = q.m;
    r->max_groups = q.G;

    /* budget split */
    double eps_sel = 0, del_sel = 0, eps_val = sp->epsilon, del_val = sp->delta;
    if (sp->kind == PVG_QUERY_TOP_ITEMS) {
        eps_sel = sp->epsilon;
        del_sel = sp->delta;
        eps_val = 0;
        del_val = 0;
    } else if (grouped) {
        eps_sel = sp->epsilon / 2;
        eps_val = sp->epsilon / 2;
        del_sel = sp->noise == PVG_QUERY_NOISE_GAUSSIAN ? sp->delta / 2 : sp->delta;
        del_val = sp->delta - del_sel;
    }
    int gauss = sp->noise == PVG_QUERY_NOISE_GAUSSIAN;
    double m = (double)q.m;
    int mean_per_user = sp->value == PVG_QUERY_VALUE_EVENTS; /* denominator: users */
    pvg_query_sensitivity sum_sens =
        sp->value == PVG_QUERY_VALUE_EVENTS
            ? pvg_query_sensitivity_sum_events(q.m, q.G, sp->clamp_lo, sp->clamp_hi)
            : pvg_query_sensitivity_sum_values(q.m, q.G, sp->clamp_lo, sp->clamp_hi);
    pvg_query_sensitivity cnt_sens = sp->kind == PVG_QUERY_MEAN && mean_per_user
                                         ? pvg_query_sensitivity_users(q.G)
                                         : pvg_query_sensitivity_count(q.m, q.G);

    /* ungrouped event-count mean over all users: zero-event users count too */
    if (!grouped && sp->kind == PVG_QUERY_MEAN && mean_per_user) {
        long g = gt_get(&q.gt, "");
        if (g < 0) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            goto done;
        }
        q.gt.g[g].users = q.users;
    }
    if (!grouped && sp->kind != PVG_QUERY_HISTOGRAM && sp->kind != PVG_QUERY_QUANTILE &&
        q.gt.n == 0) {
        if (gt_get(&q.gt, "") < 0) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    if (sp->kind == PVG_QUERY_HISTOGRAM) {
        /* every bin is public: make sure all exist */
        for (int b = 0; b < sp->bins; b++) {
            char k[16];
            snprintf(k, sizeof k, "%06d", b);
            if (gt_get(&q.gt, k) < 0) {
                st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
                goto done;
            }
        }
    }

    size_t cap = sp->kind == PVG_QUERY_QUANTILE ? 1 : q.gt.n;
    r->rows = calloc(cap ? cap : 1, sizeof *r->rows);
    if (!r->rows) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto done;
    }

    if (sp->kind == PVG_QUERY_QUANTILE) {
        /* exponential mechanism over 1001 candidates on the clamp range;
         * k = round(1000 q); sensitivity 1000 m */
        enum { NC = 1001 };
        int64_t *u = malloc(NC * sizeof *u);
        if (!u) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            goto done;
        }
        qsort(q.vals, q.nv, sizeof *q.vals, cmp_double);
        /* u(c) = -max(0, k N - 1000 #{x <= c}, 1000 #{x < c} - k N): zero exactly
         * at the q-quantiles, each term moves by at most 1000 m per user */
        int64_t k = (int64_t)llround(1000 * sp->quantile), N = (int64_t)q.nv;
        size_t le = 0, lt = 0;
        for (int i = 0; i < NC; i++) {
            double c = sp->clamp_lo + (sp->clamp_hi - sp->clamp_lo) * i / (NC - 1);
            while (le < q.nv && q.vals[le] <= c)
                le++;
            while (lt < q.nv && q.vals[lt] < c)
                lt++;
            int64_t a = k * N - 1000 * (int64_t)le, b = 1000 * (int64_t)lt - k * N;
            int64_t pen = a > b ? a : b;
            u[i] = pen > 0 ? -pen : 0;
        }
        size_t pick = 0;
        st = pvg_dp_exponential(rng, u, NC, 1000 * (int64_t)q.m, sp->epsilon, 1, &pick, err);
        free(u);
        if (st != PVG_OK) goto done;
        r->rows[0].value = sp->clamp_lo + (sp->clamp_hi - sp->clamp_lo) * (double)pick / (NC - 1);
        /* utility guarantee: with probability >= 0.95 the rank error is at most
         * (2 m / eps) ln(NC / 0.05) events; the interval in value units would
         * need the private ranks, so it is reported as the rank error. */
        r->rows[0].ci_lo = NAN;
        r->rows[0].ci_hi = NAN;
        r->rows[0].count = 2 * m / sp->epsilon * log(NC / 0.05);
        r->n_rows = 1;
        r->mechanism = "exponential";
        r->noise_scale = 2 * m / sp->epsilon;
    } else {
        pvg_dp_partition_rule rule;
        if (grouped) {
            if ((st = pvg_dp_partition_rule_make(eps_sel, del_sel, q.G, &rule, err)) != PVG_OK)
                goto done;
            r->selection_threshold = (long)rule.threshold;
        }
        dp_plan pc, ps;
        int need_sum = sp->kind == PVG_QUERY_SUM || sp->kind == PVG_QUERY_MEAN;
        int need_cnt = sp->kind == PVG_QUERY_COUNT || sp->kind == PVG_QUERY_MEAN ||
                       sp->kind == PVG_QUERY_HISTOGRAM;
        double e_each = sp->kind == PVG_QUERY_MEAN ? eps_val / 2 : eps_val;
        double d_each = sp->kind == PVG_QUERY_MEAN ? del_val / 2 : del_val;
        if (need_cnt && (st = dp_plan_make(gauss, 1, cnt_sens.per_group, cnt_sens.groups, e_each,
                                           d_each, &pc, err)) != PVG_OK)
            goto done;
        if (need_sum && (st = dp_plan_make(gauss, 0, sum_sens.per_group, sum_sens.groups, e_each,
                                           d_each, &ps, err)) != PVG_OK)
            goto done;
        if (sp->kind == PVG_QUERY_TOP_ITEMS) {
            pvg_query_sensitivity us = pvg_query_sensitivity_users(q.G);
            r->sensitivity = us.l1; /* partition selection: DLap(G / eps) on user counts */
        } else {
            const pvg_query_sensitivity *vs = need_sum ? &sum_sens : &cnt_sens;
            r->sensitivity = gauss ? vs->l2 : vs->l1;
            if (sp->kind == PVG_QUERY_MEAN)
                r->count_sensitivity = gauss ? cnt_sens.l2 : cnt_sens.l1;
        }
        r->mechanism = sp->kind == PVG_QUERY_TOP_ITEMS ? "partition-selection/discrete-laplace"
                       : gauss                         ? "discrete-gaussian"
                                                       : "discrete-laplace";
        r->noise_scale = sp->kind == PVG_QUERY_TOP_ITEMS ? rule.scale
                         : need_sum                      ? ps.info.scale
                                                         : pc.info.scale;
        for (size_t i = 0; i < q.gt.n; i++) {
            grp *g = &q.gt.g[i];
            int64_t noisy_users = 0;
            if (grouped && !pvg_dp_partition_keep(rng, &rule, g->users, &noisy_users)) continue;
            pvg_query_row *row = &r->rows[r->n_rows];
            double cnt = mean_per_user && sp->kind == PVG_QUERY_MEAN ? (double)g->users : g->count;
            double nc = 0, ns = 0;
            if (need_cnt && (st = dp_plan_apply(rng, &pc, cnt, &nc, err)) != PVG_OK) goto done;
            if (need_sum && (st = dp_plan_apply(rng, &ps, g->sum, &ns, err)) != PVG_OK) goto done;
            switch (sp->kind) {
            case PVG_QUERY_COUNT:
            case PVG_QUERY_HISTOGRAM:
                row->value = nc;
                row->ci_lo = nc - pc.info.ci95;
                row->ci_hi = nc + pc.info.ci95;
                row->count = nc;
                break;
            case PVG_QUERY_SUM:
                row->value = ns;
                row->ci_lo = ns - ps.info.ci95;
                row->ci_hi = ns + ps.info.ci95;
                row->count = 0;
                break;
            case PVG_QUERY_MEAN: {
                double den = nc < 1 ? 1 : nc;
                double mean = ns / den;
                double hw = (ps.info.ci95 + fabs(mean) * pc.info.ci95) / den;
                row->value = mean;
                row->ci_lo = mean - hw;
                row->ci_hi = mean + hw;
                row->count = nc;
                break;
            }
            case PVG_QUERY_TOP_ITEMS: {
                row->value = (double)noisy_users;
                double hw = lap_ci95_public(rule.scale);
                row->ci_lo = row->value - hw;
                row->ci_hi = row->value + hw;
                row->count = (double)noisy_users;
                break;
            }
            default:
                break;
            }
            if (sp->kind == PVG_QUERY_HISTOGRAM) {
                int b = atoi(g->key);
                double w = (sp->clamp_hi - sp->clamp_lo) / sp->bins;
                char lab[96];
                snprintf(lab, sizeof lab, "[%g,%g%c", sp->clamp_lo + b * w,
                         sp->clamp_lo + (b + 1) * w, b == sp->bins - 1 ? ']' : ')');
                /* "000003|[lo,hi)": the zero-padded bin index keeps the sort order;
                 * the prefix is cut after sorting */
                char *k2 = malloc(strlen(g->key) + strlen(lab) + 2);
                if (!k2) {
                    st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
                    goto done;
                }
                sprintf(k2, "%s|%s", g->key, lab);
                row->group = k2;
            } else {
                row->group = grouped ? strdup(g->key) : NULL;
                if (grouped && !row->group) {
                    st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
                    goto done;
                }
            }
            r->n_rows++;
        }
        if (sp->kind == PVG_QUERY_TOP_ITEMS) {
            qsort(r->rows, r->n_rows, sizeof *r->rows, cmp_row_value_desc);
            if (r->n_rows > (size_t)sp->top) {
                for (size_t i = (size_t)sp->top; i < r->n_rows; i++)
                    free((char *)r->rows[i].group);
                r->n_rows = (size_t)sp->top;
            }
        } else if (grouped || sp->kind == PVG_QUERY_HISTOGRAM) {
            qsort(r->rows, r->n_rows, sizeof *r->rows, cmp_row_group);
            if (sp->kind == PVG_QUERY_HISTOGRAM)
                for (size_t i = 0; i < r->n_rows; i++) {
                    char *bar = strchr(r->rows[i].group, '|');
                    if (bar) memmove((char *)r->rows[i].group, bar + 1, strlen(bar + 1) + 1);
                }
        }
    }

    /* describe and charge, before anything is returned */
    const char *tname =
        sp->event_type >= 0 ? pvg_event_type_name((pvg_event_type)sp->event_type) : "all";
    const char *vname = sp->value == PVG_QUERY_VALUE_AMOUNT   ? "amount"
                        : sp->value == PVG_QUERY_VALUE_EVENTS ? "events per user"
                                                              : "quantity";
    if (sp->what)
        snprintf(r->what, sizeof r->what, "%s", sp->what);
    else if (sp->kind == PVG_QUERY_COUNT || sp->kind == PVG_QUERY_TOP_ITEMS)
        snprintf(
            r->what, sizeof r->what, "query %s of %s events%s%s", pvg_query_kind_name(sp->kind),
            tname, grouped && sp->kind != PVG_QUERY_TOP_ITEMS ? " by " : "",
            grouped && sp->kind != PVG_QUERY_TOP_ITEMS ? pvg_query_group_name(sp->group_by) : "");
    else
        snprintf(r->what, sizeof r->what, "query %s of %s (%s events, clamp %g:%g)%s%s",
                 pvg_query_kind_name(sp->kind), vname, tname, sp->clamp_lo, sp->clamp_hi,
                 grouped ? " by " : "", grouped ? pvg_query_group_name(sp->group_by) : "");
    r->epsilon = sp->epsilon;
    r->delta = sp->delta;
    if (!mem) /* in memory: the caller (the audit) accounts for the release */
        st = pvg_ledger_charge(s, sp->dataset ? sp->dataset : PVG_LEDGER_DEFAULT_DATASET, r->what,
                               r->mechanism, sp->epsilon, sp->delta, &r->release_id, err);
done:
    cm_free(&q.cats);
    gt_free(&q.gt);
    free(q.slots);
    free(q.vals);
    if (st != PVG_OK) {
        pvg_query_result_free(r);
        return st;
    }
    *out = r;
    return PVG_OK;
}
