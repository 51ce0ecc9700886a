/*
 * cooc.c - DP item co-occurrence ("similar items"): per-shopper bounded
 * buyer and co-buyer counts over a public item domain, discrete Gaussian
 * (or Laplace) noise on every item and every pair, then each item's top-k
 * neighbours by normalised noisy co-occurrence; serialisation to JSON so
 * that a release can be cached and served. Sensitivities: release.h and
 * docs/dp.md ("Popular list and similar items").
 */
#include <privguide/dp.h>
#include <privguide/release.h>

#include "dp/dp_internal.h"
#include "dp/release_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define COOC_MAX_ITEMS 5000
#define COOC_MAX_M 1024
#define COOC_FORMAT "privguide-dp-cooc/1"

struct pvg_dp_cooc_counts {
    rel_domain dom;
    int64_t m;
    uint32_t *pop;  /* per caller position */
    uint32_t *pair; /* upper triangle, i < j */
};

/* index of pair (i, j), i < j < n, in the packed upper triangle */
static size_t pair_index(size_t n, size_t i, size_t j)
{
    return i * n - i * (i + 1) / 2 + (j - i - 1);
}

pvg_status pvg_dp_cooc_counts_new(const int64_t *items, size_t n, int64_t max_items_per_user,
                                  pvg_dp_cooc_counts **out, pvg_error *err)
{
    *out = NULL;
    if (n < 2 || n > COOC_MAX_ITEMS)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "co-occurrence domain: want 2..%d items, got %zu (restrict a large "
                             "catalog to the top items of a popular release)",
                             COOC_MAX_ITEMS, n);
    if (max_items_per_user < 2 || max_items_per_user > COOC_MAX_M)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "co-occurrence: max_items_per_user must be in 2..%d, got %lld",
                             COOC_MAX_M, (long long)max_items_per_user);
    pvg_dp_cooc_counts *c = calloc(1, sizeof *c);
    if (!c) return pvg_error_set(err, PVG_ERR_NOMEM, "co-occurrence counts: out of memory");
    pvg_status st = rel_domain_init(&c->dom, items, n, err);
    if (st != PVG_OK) {
        free(c);
        return st;
    }
    c->m = max_items_per_user;
    c->pop = calloc(n, sizeof *c->pop);
    c->pair = calloc(n * (n - 1) / 2, sizeof *c->pair);
    if (!c->pop || !c->pair) {
        pvg_dp_cooc_counts_free(c);
        return pvg_error_set(err, PVG_ERR_NOMEM, "co-occurrence counts of %zu items: out of memory",
                             n);
    }
    *out = c;
    return PVG_OK;
}

pvg_status pvg_dp_cooc_counts_add_user(pvg_dp_cooc_counts *c, pvg_rng *rng, const int64_t *items,
                                       size_t n, pvg_error *err)
{
    if (!c || (n && !items) || !rng)
        return pvg_error_set(err, PVG_ERR_INVALID, "co-occurrence counts: NULL argument");
    size_t k = rel_bound_user(&c->dom, rng, items, n, c->m);
    const size_t *p = c->dom.scratch; /* ascending positions */
    for (size_t a = 0; a < k; a++) {
        c->pop[p[a]]++;
        for (size_t b = a + 1; b < k; b++)
            c->pair[pair_index(c->dom.n, p[a], p[b])]++;
    }
    return PVG_OK;
}

int64_t pvg_dp_cooc_counts_exact(const pvg_dp_cooc_counts *c, size_t i, size_t j)
{
    if (!c || i >= c->dom.n || j >= c->dom.n) return 0;
    if (i == j) return c->pop[i];
    if (i > j) {
        size_t t = i;
        i = j;
        j = t;
    }
    return c->pair[pair_index(c->dom.n, i, j)];
}

void pvg_dp_cooc_counts_free(pvg_dp_cooc_counts *c)
{
    if (!c) return;
    rel_domain_clear(&c->dom);
    free(c->pop);
    free(c->pair);
    free(c);
}

void pvg_dp_cooc_params_init(pvg_dp_cooc_params *p)
{
    memset(p, 0, sizeof *p);
    p->epsilon = 1.0;
    p->delta = 1e-7;
    p->k = 10;
    p->pop_floor = 0;
    p->mechanism = PVG_DP_RELEASE_DEFAULT;
}

void pvg_dp_cooc_free(pvg_dp_cooc *r)
{
    if (!r) return;
    free(r->items);
    free(r->noisy_pop);
    free(r->n_similar);
    free(r->similar);
    free(r);
}

static pvg_dp_cooc *cooc_alloc(size_t n, size_t k)
{
    pvg_dp_cooc *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->n_items = n;
    r->k = k;
    r->items = calloc(n, sizeof *r->items);
    r->noisy_pop = calloc(n, sizeof *r->noisy_pop);
    r->n_similar = calloc(n, sizeof *r->n_similar);
    r->similar = calloc(n * k, sizeof *r->similar);
    if (!r->items || !r->noisy_pop || !r->n_similar || !r->similar) {
        pvg_dp_cooc_free(r);
        return NULL;
    }
    return r;
}

/* Inserts s into row (best first, at most k), ties: smaller item id first. */
static void row_insert(pvg_dp_similar *row, size_t *len, size_t k, pvg_dp_similar s)
{
    size_t n = *len;
    if (n == k) {
        const pvg_dp_similar *w = &row[k - 1];
        if (s.score < w->score || (s.score == w->score && s.item > w->item)) return;
        n--;
    }
    size_t at = n;
    while (at > 0 && (row[at - 1].score < s.score ||
                      (row[at - 1].score == s.score && row[at - 1].item > s.item))) {
        row[at] = row[at - 1];
        at--;
    }
    row[at] = s;
    *len = n + 1;
}

pvg_status pvg_dp_cooc_release(const pvg_dp_cooc_counts *c, pvg_rng *rng,
                               const pvg_dp_cooc_params *p, pvg_dp_cooc **out, pvg_error *err)
{
    *out = NULL;
    if (!c || !p || !rng)
        return pvg_error_set(err, PVG_ERR_INVALID, "co-occurrence release: NULL argument");
    pvg_status st = dp_check_rng(rng, p->allow_insecure_rng, err);
    if (st != PVG_OK) return st;
    size_t n = c->dom.n;
    if (p->k < 1 || p->k > n - 1)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "co-occurrence release: k must be in 1..%zu, got %zu", n - 1, p->k);
    if (!(p->pop_floor >= 0) || isinf(p->pop_floor))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "co-occurrence release: pop_floor must be >= 0, got %g", p->pop_floor);
    pvg_dp_release_mech mech = p->mechanism;
    if (mech != PVG_DP_RELEASE_DEFAULT && mech != PVG_DP_RELEASE_GAUSSIAN &&
        mech != PVG_DP_RELEASE_LAPLACE)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "co-occurrence release: mechanism %d (want DEFAULT, GAUSSIAN or "
                             "LAPLACE)",
                             (int)mech);
    int gaussian = mech != PVG_DP_RELEASE_LAPLACE;
    /* m item coordinates + m(m-1)/2 pair coordinates, each moved by 1 */
    double m = (double)c->m;
    double sens = m * (m + 1) / 2; /* L1 and squared L2 alike */
    rel_noise nz;
    if ((st = rel_noise_make(gaussian, sens, sens, p->epsilon, p->delta, &nz, err)) != PVG_OK)
        return st;
    double floor_ = p->pop_floor > 0 ? p->pop_floor : 3 * nz.scale;
    if (floor_ < 1) floor_ = 1;
    pvg_dp_cooc *r = cooc_alloc(n, p->k);
    double *den = malloc(n * sizeof *den);
    if (!r || !den) {
        pvg_dp_cooc_free(r);
        free(den);
        return pvg_error_set(err, PVG_ERR_NOMEM, "co-occurrence release: out of memory");
    }
    /* rows in ascending item order: row r <-> caller position dom.pos[r] */
    size_t *row_of = malloc(n * sizeof *row_of);
    if (!row_of) {
        pvg_dp_cooc_free(r);
        free(den);
        return pvg_error_set(err, PVG_ERR_NOMEM, "co-occurrence release: out of memory");
    }
    for (size_t rr = 0; rr < n; rr++) {
        r->items[rr] = c->dom.sorted[rr];
        row_of[c->dom.pos[rr]] = rr;
    }
    for (size_t i = 0; i < n; i++) { /* noise on every item count */
        int64_t v = (int64_t)c->pop[i] + rel_noise_draw(rng, &nz);
        r->noisy_pop[row_of[i]] = v;
        den[i] = (double)v > floor_ ? (double)v : floor_;
    }
    for (size_t i = 0; i < n; i++) { /* ... and on every pair */
        pvg_dp_similar *ri = r->similar + row_of[i] * p->k;
        for (size_t j = i + 1; j < n; j++) {
            int64_t v = (int64_t)c->pair[pair_index(n, i, j)] + rel_noise_draw(rng, &nz);
            if (v <= 0) continue;
            double score = (double)v / sqrt(den[i] * den[j]);
            pvg_dp_similar a = {c->dom.ids[j], score, v}, b = {c->dom.ids[i], score, v};
            row_insert(ri, &r->n_similar[row_of[i]], p->k, a);
            row_insert(r->similar + row_of[j] * p->k, &r->n_similar[row_of[j]], p->k, b);
        }
    }
    free(den);
    free(row_of);
    pvg_dp_release_info *in = &r->info;
    in->mechanism =
        pvg_dp_release_mech_name(gaussian ? PVG_DP_RELEASE_GAUSSIAN : PVG_DP_RELEASE_LAPLACE, 1);
    in->epsilon = nz.epsilon;
    in->delta = nz.delta;
    in->max_items_per_user = c->m;
    in->l1_sensitivity = sens;
    in->l2_sensitivity = sqrt(sens);
    in->noise_scale = nz.scale;
    in->n_candidates = n;
    *out = r;
    return PVG_OK;
}

static long find_row(const pvg_dp_cooc *r, int64_t item)
{
    size_t lo = 0, hi = r->n_items;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->items[mid] < item)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->n_items && r->items[lo] == item ? (long)lo : -1;
}

pvg_status pvg_dp_cooc_similar(const pvg_dp_cooc *r, int64_t item, const pvg_dp_similar **out,
                               size_t *n, pvg_error *err)
{
    *out = NULL;
    *n = 0;
    long row = r ? find_row(r, item) : -1;
    if (row < 0)
        return pvg_error_set(err, PVG_ERR_NOT_FOUND,
                             "item %lld is not in the co-occurrence release's domain",
                             (long long)item);
    *out = r->similar + (size_t)row * r->k;
    *n = r->n_similar[row];
    return PVG_OK;
}

/* ---- serialisation ---------------------------------------------------------- */

pvg_status pvg_dp_cooc_to_json(const pvg_dp_cooc *r, char **json_out, pvg_error *err)
{
    *json_out = NULL;
    if (!r) return pvg_error_set(err, PVG_ERR_INVALID, "co-occurrence release: NULL");
    json_t *o = json_object();
    json_t *items = json_array();
    int bad = !o || !items;
    if (!bad) {
        bad |= json_object_set_new(o, "format", json_string(COOC_FORMAT));
        bad |= json_object_set_new(o, "mechanism", json_string(r->info.mechanism));
        bad |= json_object_set_new(o, "epsilon", json_real(r->info.epsilon));
        bad |= json_object_set_new(o, "delta", json_real(r->info.delta));
        bad |= json_object_set_new(o, "max_items_per_user",
                                   json_integer((json_int_t)r->info.max_items_per_user));
        bad |= json_object_set_new(o, "l1_sensitivity", json_real(r->info.l1_sensitivity));
        bad |= json_object_set_new(o, "l2_sensitivity", json_real(r->info.l2_sensitivity));
        bad |= json_object_set_new(o, "noise_scale", json_real(r->info.noise_scale));
        bad |=
            json_object_set_new(o, "n_candidates", json_integer((json_int_t)r->info.n_candidates));
        bad |= json_object_set_new(o, "k", json_integer((json_int_t)r->k));
    }
    for (size_t i = 0; !bad && i < r->n_items; i++) {
        json_t *row = json_array();
        bad |= !row;
        for (size_t j = 0; !bad && j < r->n_similar[i]; j++) {
            const pvg_dp_similar *s = &r->similar[i * r->k + j];
            bad |= json_array_append_new(
                row, json_pack("[IfI]", (json_int_t)s->item, s->score, (json_int_t)s->noisy_cooc));
        }
        if (!bad)
            bad |= json_array_append_new(items, json_pack("[IIo]", (json_int_t)r->items[i],
                                                          (json_int_t)r->noisy_pop[i], row));
        else
            json_decref(row);
    }
    if (!bad) {
        bad |= json_object_set_new(o, "items", items);
        items = NULL;
    }
    char *text = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(items);
    json_decref(o);
    if (!text)
        return pvg_error_set(err, PVG_ERR_NOMEM, "co-occurrence release: JSON out of memory");
    *json_out = text;
    return PVG_OK;
}

static const char *static_mech_name(const char *s)
{
    static const char *const names[] = {"discrete-gaussian-cooc", "discrete-laplace-cooc"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (s && strcmp(s, names[i]) == 0) return names[i];
    return NULL;
}

pvg_status pvg_dp_cooc_from_json(const char *json, pvg_dp_cooc **out, pvg_error *err)
{
    *out = NULL;
    json_error_t je;
    json_t *o = json ? json_loads(json, 0, &je) : NULL;
    if (!o)
        return pvg_error_set(err, PVG_ERR_CORRUPT,
                             "co-occurrence release: not JSON (line %d, column %d: %s)",
                             json ? je.line : 0, json ? je.column : 0, json ? je.text : "NULL");
    pvg_status st = PVG_OK;
    const char *field = NULL;
    pvg_dp_cooc *r = NULL;
    const char *fmt = json_string_value(json_object_get(o, "format"));
    json_t *items = json_object_get(o, "items");
    json_t *k = json_object_get(o, "k");
    const char *mech = static_mech_name(json_string_value(json_object_get(o, "mechanism")));
    if (!fmt || strcmp(fmt, COOC_FORMAT) != 0)
        field = "format (expected \"" COOC_FORMAT "\")";
    else if (!mech)
        field = "mechanism";
    else if (!json_is_integer(k) || json_integer_value(k) < 1 || json_integer_value(k) > 100000)
        field = "k";
    else if (!json_is_array(items) || json_array_size(items) < 1)
        field = "items";
    if (!field) {
        size_t n = json_array_size(items), kk = (size_t)json_integer_value(k);
        static const char *const reals[] = {"epsilon", "delta", "l1_sensitivity", "l2_sensitivity",
                                            "noise_scale"};
        double vals[5] = {0};
        for (size_t f = 0; !field && f < 5; f++) {
            json_t *v = json_object_get(o, reals[f]);
            if (!json_is_number(v))
                field = reals[f];
            else
                vals[f] = json_number_value(v);
        }
        r = field ? NULL : cooc_alloc(n, kk);
        if (!field && !r)
            st = pvg_error_set(err, PVG_ERR_NOMEM, "co-occurrence release: out of memory");
        if (r) {
            r->info.epsilon = vals[0];
            r->info.delta = vals[1];
            r->info.l1_sensitivity = vals[2];
            r->info.l2_sensitivity = vals[3];
            r->info.noise_scale = vals[4];
        }
        if (r && !field) {
            json_t *mm = json_object_get(o, "max_items_per_user");
            json_t *nc = json_object_get(o, "n_candidates");
            if (!json_is_integer(mm))
                field = "max_items_per_user";
            else if (!json_is_integer(nc) || json_integer_value(nc) < 0)
                field = "n_candidates";
            else {
                r->info.max_items_per_user = (int64_t)json_integer_value(mm);
                r->info.n_candidates = (size_t)json_integer_value(nc);
                r->info.mechanism = mech;
            }
        }
        for (size_t i = 0; r && !field && i < n; i++) {
            json_t *e = json_array_get(items, i);
            json_t *row = json_array_get(e, 2);
            if (!json_is_array(e) || json_array_size(e) != 3 ||
                !json_is_integer(json_array_get(e, 0)) || !json_is_integer(json_array_get(e, 1)) ||
                !json_is_array(row) || json_array_size(row) > kk) {
                field = "(expected [item, noisy_pop, [at most k neighbours]])";
            } else {
                r->items[i] = (int64_t)json_integer_value(json_array_get(e, 0));
                if (i > 0 && r->items[i] <= r->items[i - 1])
                    field = "(expected item ids ascending and distinct)";
            }
            if (field) {
                st = pvg_error_set(err, PVG_ERR_CORRUPT,
                                   "co-occurrence release: field items[%zu] %s", i, field);
                break;
            }
            r->noisy_pop[i] = (int64_t)json_integer_value(json_array_get(e, 1));
            r->n_similar[i] = json_array_size(row);
            for (size_t j = 0; j < r->n_similar[i]; j++) {
                json_t *s = json_array_get(row, j);
                if (!json_is_array(s) || json_array_size(s) != 3 ||
                    !json_is_integer(json_array_get(s, 0)) ||
                    !json_is_number(json_array_get(s, 1)) ||
                    !json_is_integer(json_array_get(s, 2))) {
                    field = "(expected [neighbour, score, noisy_cooc])";
                    st = pvg_error_set(err, PVG_ERR_CORRUPT,
                                       "co-occurrence release: field items[%zu][2][%zu] %s", i, j,
                                       field);
                    break;
                }
                pvg_dp_similar *d = &r->similar[i * kk + j];
                d->item = (int64_t)json_integer_value(json_array_get(s, 0));
                d->score = json_number_value(json_array_get(s, 1));
                d->noisy_cooc = (int64_t)json_integer_value(json_array_get(s, 2));
            }
            if (field) break;
        }
    }
    if (field && st == PVG_OK)
        st = pvg_error_set(err, PVG_ERR_CORRUPT,
                           "co-occurrence release: missing or malformed field %s", field);
    json_decref(o);
    if (st != PVG_OK) {
        pvg_dp_cooc_free(r);
        return st;
    }
    *out = r;
    return PVG_OK;
}
