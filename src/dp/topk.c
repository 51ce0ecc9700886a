/*
 * topk.c - the DP popular list: user-level bounded distinct-shopper counts
 * over a public candidate domain, noise on every candidate (discrete
 * Gaussian or discrete Laplace), then top-k of the noisy counts; and, as
 * the baseline it replaces, k rounds of the exponential mechanism. Also the
 * helpers shared with cooc.c (release_internal.h). Derivations of the
 * sensitivities and of the calibration: include/privguide/release.h and
 * docs/dp.md ("Popular list and similar items").
 */
#include <privguide/dp.h>
#include <privguide/release.h>

#include "dp/dp_internal.h"
#include "dp/release_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the public domain -------------------------------------------------- */

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct id_pos {
    int64_t id;
    uint32_t pos;
} id_pos;

static int cmp_id_pos(const void *a, const void *b)
{
    const id_pos *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

void rel_domain_clear(rel_domain *d)
{
    if (!d) return;
    free(d->ids);
    free(d->sorted);
    free(d->pos);
    free(d->scratch);
    memset(d, 0, sizeof *d);
}

pvg_status rel_domain_init(rel_domain *d, const int64_t *ids, size_t n, pvg_error *err)
{
    memset(d, 0, sizeof *d);
    if (!ids || n == 0 || n >= UINT32_MAX)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "candidate domain: want 1 to 2^32-1 item ids, got %zu", n);
    id_pos *tmp = malloc(n * sizeof *tmp);
    d->ids = malloc(n * sizeof *d->ids);
    d->sorted = malloc(n * sizeof *d->sorted);
    d->pos = malloc(n * sizeof *d->pos);
    d->scratch = malloc((n + 1) * sizeof *d->scratch);
    d->n = n;
    if (!tmp || !d->ids || !d->sorted || !d->pos || !d->scratch) {
        free(tmp);
        rel_domain_clear(d);
        return pvg_error_set(err, PVG_ERR_NOMEM, "candidate domain of %zu items: out of memory", n);
    }
    memcpy(d->ids, ids, n * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        tmp[i].id = ids[i];
        tmp[i].pos = (uint32_t)i;
    }
    qsort(tmp, n, sizeof *tmp, cmp_id_pos);
    for (size_t r = 0; r < n; r++) {
        if (r > 0 && tmp[r].id == tmp[r - 1].id) {
            pvg_status st = pvg_error_set(err, PVG_ERR_INVALID,
                                          "candidate domain: item id %lld at positions %u and %u "
                                          "(expected distinct ids)",
                                          (long long)tmp[r].id, tmp[r - 1].pos, tmp[r].pos);
            free(tmp);
            rel_domain_clear(d);
            return st;
        }
        d->sorted[r] = tmp[r].id;
        d->pos[r] = tmp[r].pos;
    }
    free(tmp);
    return PVG_OK;
}

long rel_domain_find(const rel_domain *d, int64_t id)
{
    size_t lo = 0, hi = d->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->sorted[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < d->n && d->sorted[lo] == id ? (long)d->pos[lo] : -1;
}

size_t rel_bound_user(rel_domain *d, pvg_rng *rng, const int64_t *items, size_t n, int64_t m)
{
    /* distinct in-domain positions by sort + unique on the scratch (n + 1
     * slots; compacted whenever full, so any number of repeats fits) */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        long p = rel_domain_find(d, items[i]);
        if (p < 0) continue;
        if (k == d->n + 1) {
            qsort(d->scratch, k, sizeof *d->scratch, cmp_size);
            size_t u = 0;
            for (size_t j = 0; j < k; j++)
                if (u == 0 || d->scratch[u - 1] != d->scratch[j]) d->scratch[u++] = d->scratch[j];
            k = u;
        }
        d->scratch[k++] = (size_t)p;
    }
    qsort(d->scratch, k, sizeof *d->scratch, cmp_size);
    size_t u = 0;
    for (size_t j = 0; j < k; j++)
        if (u == 0 || d->scratch[u - 1] != d->scratch[j]) d->scratch[u++] = d->scratch[j];
    k = u;
    if ((int64_t)k > m) {
        /* uniformly random m-subset: partial Fisher-Yates on the first m slots */
        for (size_t j = 0; j < (size_t)m; j++) {
            size_t r = j + (size_t)pvg_rng_uniform(rng, (uint64_t)(k - j));
            size_t t = d->scratch[j];
            d->scratch[j] = d->scratch[r];
            d->scratch[r] = t;
        }
        k = (size_t)m;
        qsort(d->scratch, k, sizeof *d->scratch, cmp_size);
    }
    return k;
}

/* ---- calibration ---------------------------------------------------------- */

#define LAP_DEN ((uint64_t)1 << 20)

/* rho-zCDP gives (eps, delta) for every order a > 1 with
 *   eps = rho a + (log(1/delta) - log a) / (a - 1) + log(1 - 1/a)
 * (the bound pvg_dp_zcdp_to_epsilon minimises), i.e. rho is admissible when
 * rho <= g(a) = (eps - (log(1/delta) - log a) / (a - 1) - log(1 - 1/a)) / a
 * for some a, and when rho + 2 sqrt(rho log(1/delta)) <= eps. The largest
 * rho is the maximum of g (a scan in log(a - 1), then golden section) and
 * the closed form of the second; checked against the forward conversion. */
static double rho_g(double eps, double delta, double a)
{
    return (eps - (log(1 / delta) - log(a)) / (a - 1) - log1p(-1 / a)) / a;
}

double rel_zcdp_rho_for(double epsilon, double delta)
{
    double L = log(1 / delta);
    double best = sqrt(L + epsilon) - sqrt(L);
    best *= best;
    double bx = 0, bg = -INFINITY;
    for (int i = 0; i <= 400; i++) { /* a - 1 from 1e-6 to 1e8 */
        double x = log(1e-6) + (log(1e8) - log(1e-6)) * i / 400.0;
        double g = rho_g(epsilon, delta, 1 + exp(x));
        if (g > bg) {
            bg = g;
            bx = x;
        }
    }
    double step = (log(1e8) - log(1e-6)) / 400.0;
    double lo = bx - step, hi = bx + step;
    const double gr = 0.6180339887498949;
    for (int it = 0; it < 80; it++) {
        double x1 = hi - gr * (hi - lo), x2 = lo + gr * (hi - lo);
        if (rho_g(epsilon, delta, 1 + exp(x1)) > rho_g(epsilon, delta, 1 + exp(x2)))
            hi = x2;
        else
            lo = x1;
    }
    double g = rho_g(epsilon, delta, 1 + exp(0.5 * (lo + hi)));
    if (g > bg) bg = g;
    if (bg > best) best = bg;
    if (!(best > 0)) return 0;
    /* never above: shrink until the forward conversion agrees */
    for (int i = 0; i < 100 && pvg_dp_zcdp_to_epsilon(best, delta) > epsilon; i++)
        best *= 1 - 1e-9 * (double)(1 << (i < 30 ? i : 30));
    return pvg_dp_zcdp_to_epsilon(best, delta) <= epsilon ? best : 0;
}

pvg_status rel_noise_make(int gaussian, double l1, double l2sq, double epsilon, double delta,
                          rel_noise *nz, pvg_error *err)
{
    memset(nz, 0, sizeof *nz);
    nz->gaussian = gaussian;
    if (!(epsilon > 0) || isinf(epsilon))
        return pvg_error_set(err, PVG_ERR_INVALID, "epsilon must be a finite number > 0, got %g",
                             epsilon);
    if (!gaussian) {
        /* epsilon-DP: the product of DLap(b) moves by at most exp(L1 / b). */
        double b = l1 / epsilon;
        if (!(l1 >= 1) || !(b <= 1099511627776.0 /* 2^40 */))
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "Laplace scale %g (L1 sensitivity %g / epsilon %g) out of range",
                                 b, l1, epsilon);
        nz->den = LAP_DEN;
        nz->num = (uint64_t)ceil(b * (double)LAP_DEN) + 1; /* rounded up: more noise */
        nz->scale = (double)nz->num / (double)nz->den;
        nz->epsilon = epsilon;
        nz->delta = 0;
        return PVG_OK;
    }
    if (!(delta > 0 && delta < 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "delta must be in (0, 1), got %g", delta);
    if (!(l2sq >= 1) || isinf(l2sq))
        return pvg_error_set(err, PVG_ERR_INVALID, "squared L2 sensitivity must be >= 1, got %g",
                             l2sq);
    /* the largest rho with zcdp_to_epsilon(rho, delta) <= epsilon */
    double rho = rel_zcdp_rho_for(epsilon, delta);
    if (!(rho > 0))
        return pvg_error_set(err, PVG_ERR_INVALID, "epsilon %g too small for delta %g", epsilon,
                             delta);
    double s2 = l2sq / (2 * rho);
    if (!(s2 < 1e13))
        return pvg_error_set(err, PVG_ERR_INVALID, "Gaussian sigma^2 %g too large", s2);
    int k = 23;
    while (k > 0 && s2 * (double)((uint64_t)1 << k) >= 140737488355328.0 /* 2^47 */)
        k--;
    nz->den = (uint64_t)1 << k;
    nz->num = (uint64_t)ceil(s2 * (double)nz->den) + 1; /* rounded up: rho only shrinks */
    double s2r = (double)nz->num / (double)nz->den;
    nz->scale = sqrt(s2r);
    nz->epsilon = epsilon;
    nz->delta = delta;
    if (pvg_dp_zcdp_to_epsilon(l2sq / (2 * s2r), delta) > epsilon)
        return pvg_error_set(err, PVG_ERR_INTERNAL, "Gaussian calibration missed epsilon %g",
                             epsilon);
    return PVG_OK;
}

int64_t rel_noise_draw(pvg_rng *rng, const rel_noise *nz)
{
    return nz->gaussian ? pvg_dp_discrete_gaussian(rng, nz->num, nz->den)
                        : pvg_dp_discrete_laplace(rng, nz->num, nz->den);
}

const char *pvg_dp_release_mech_name(pvg_dp_release_mech mech, int cooc)
{
    switch (mech) {
    case PVG_DP_RELEASE_DEFAULT:
        return cooc ? "discrete-gaussian-cooc" : "exponential-monotone-top-k";
    case PVG_DP_RELEASE_GAUSSIAN:
        return cooc ? "discrete-gaussian-cooc" : "discrete-gaussian-top-k";
    case PVG_DP_RELEASE_LAPLACE:
        return cooc ? "discrete-laplace-cooc" : "discrete-laplace-top-k";
    case PVG_DP_RELEASE_EXPONENTIAL_PEELING:
        return cooc ? "?" : "exponential-peeling-top-k";
    case PVG_DP_RELEASE_EXPONENTIAL_MONOTONE:
        return cooc ? "?" : "exponential-monotone-top-k";
    }
    return "?";
}

/* ---- bounded item counts -------------------------------------------------- */

struct pvg_dp_item_counts {
    rel_domain dom;
    int64_t m;
    int64_t *count; /* caller order */
};

pvg_status pvg_dp_item_counts_new(const int64_t *candidates, size_t n, int64_t max_items_per_user,
                                  pvg_dp_item_counts **out, pvg_error *err)
{
    *out = NULL;
    if (max_items_per_user < 1)
        return pvg_error_set(err, PVG_ERR_INVALID, "max_items_per_user must be >= 1, got %lld",
                             (long long)max_items_per_user);
    pvg_dp_item_counts *c = calloc(1, sizeof *c);
    if (!c) return pvg_error_set(err, PVG_ERR_NOMEM, "item counts: out of memory");
    pvg_status st = rel_domain_init(&c->dom, candidates, n, err);
    if (st != PVG_OK) {
        free(c);
        return st;
    }
    c->count = calloc(n, sizeof *c->count);
    if (!c->count) {
        pvg_dp_item_counts_free(c);
        return pvg_error_set(err, PVG_ERR_NOMEM, "item counts: out of memory");
    }
    c->m = max_items_per_user;
    *out = c;
    return PVG_OK;
}

pvg_status pvg_dp_item_counts_add_user(pvg_dp_item_counts *c, pvg_rng *rng, const int64_t *items,
                                       size_t n, pvg_error *err)
{
    if (!c || (n && !items) || !rng)
        return pvg_error_set(err, PVG_ERR_INVALID, "item counts: NULL argument");
    size_t k = rel_bound_user(&c->dom, rng, items, n, c->m);
    for (size_t j = 0; j < k; j++)
        c->count[c->dom.scratch[j]]++;
    return PVG_OK;
}

int64_t pvg_dp_popular_default_m(pvg_dp_release_mech mech)
{
    switch (mech) {
    case PVG_DP_RELEASE_GAUSSIAN:
        return 64;
    case PVG_DP_RELEASE_LAPLACE:
        return 16;
    default:
        return PVG_DP_UNBOUNDED_ITEMS;
    }
}

int64_t pvg_dp_item_counts_exact(const pvg_dp_item_counts *c, size_t i)
{
    return c && i < c->dom.n ? c->count[i] : 0;
}

size_t pvg_dp_item_counts_size(const pvg_dp_item_counts *c)
{
    return c ? c->dom.n : 0;
}

int64_t pvg_dp_item_counts_candidate(const pvg_dp_item_counts *c, size_t i)
{
    return c && i < c->dom.n ? c->dom.ids[i] : 0;
}

void pvg_dp_item_counts_free(pvg_dp_item_counts *c)
{
    if (!c) return;
    rel_domain_clear(&c->dom);
    free(c->count);
    free(c);
}

/* ---- the popular list ----------------------------------------------------- */

void pvg_dp_popular_params_init(pvg_dp_popular_params *p)
{
    memset(p, 0, sizeof *p);
    p->epsilon = 1.0;
    p->delta = 1e-7;
    p->k = 20;
    p->mechanism = PVG_DP_RELEASE_DEFAULT;
}

typedef struct ranked {
    int64_t noisy;
    size_t pos;
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->noisy != y->noisy) return x->noisy > y->noisy ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

void pvg_dp_popular_free(pvg_dp_popular *r)
{
    if (!r) return;
    free(r->items);
    free(r);
}

/* The per-round epsilon of the monotone peeling for a total (epsilon, delta)
 * over k rounds: basic composition (eps / k, delta 0) or, when larger, the
 * zCDP route: each round is eps0-bounded-range, hence eps0^2/8-zCDP (Cesar &
 * Rogers 2021, Lemma 3.2); k rounds are k eps0^2/8-zCDP, converted by
 * pvg_dp_zcdp_to_epsilon. *delta_used is 0 on the basic route. */
static double monotone_eps0(double epsilon, double delta, size_t k, double *delta_used)
{
    double basic = epsilon / (double)k;
    *delta_used = 0;
    if (!(delta > 0 && delta < 1)) return basic;
    double rho = rel_zcdp_rho_for(epsilon, delta);
    if (!(rho > 0)) return basic;
    /* rounded down to 2^-32 as pvg_dp_exponential does, then checked */
    double e0 = floor(sqrt(8 * rho / (double)k) * 4294967296.0) / 4294967296.0;
    if (e0 <= basic || pvg_dp_zcdp_to_epsilon((double)k * e0 * e0 / 8, delta) > epsilon)
        return basic;
    *delta_used = delta;
    return e0;
}

static pvg_status monotone_peeling(const pvg_dp_item_counts *c, pvg_rng *rng,
                                   const pvg_dp_popular_params *p, pvg_dp_popular *r,
                                   pvg_error *err)
{
    size_t n = c->dom.n;
    double dused = 0;
    double e0 = monotone_eps0(p->epsilon, p->delta, p->k, &dused);
    int64_t *u = malloc(n * sizeof *u);
    size_t *idx = malloc(n * sizeof *idx);
    if (!u || !idx) {
        free(u);
        free(idx);
        return pvg_error_set(err, PVG_ERR_NOMEM, "popular release: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        u[i] = c->count[i];
        idx[i] = i;
    }
    pvg_status st = PVG_OK;
    size_t left = n;
    for (size_t round = 0; round < p->k && st == PVG_OK; round++) {
        size_t pick = 0;
        /* pvg_dp_exponential weighs exp(eps' u / (2 sens)): eps' = 2 eps0,
         * sens 1 gives exp(eps0 u) */
        st = pvg_dp_exponential(rng, u, left, 1, 2 * e0, p->allow_insecure_rng, &pick, err);
        if (st != PVG_OK) break;
        r->items[round].item = c->dom.ids[idx[pick]];
        r->items[round].noisy_count = -1;
        u[pick] = u[left - 1]; /* remove without replacement */
        idx[pick] = idx[left - 1];
        left--;
    }
    free(u);
    free(idx);
    if (st != PVG_OK) return st;
    r->info.epsilon = dused > 0 ? p->epsilon : e0 * (double)p->k;
    r->info.delta = dused;
    r->info.l1_sensitivity = r->info.l2_sensitivity = 1; /* of the utility, every round */
    r->info.noise_scale = 0;
    return PVG_OK;
}

pvg_status pvg_dp_popular_release(const pvg_dp_item_counts *c, pvg_rng *rng,
                                  const pvg_dp_popular_params *p, pvg_dp_popular **out,
                                  pvg_error *err)
{
    *out = NULL;
    if (!c || !p || !rng)
        return pvg_error_set(err, PVG_ERR_INVALID, "popular release: NULL argument");
    pvg_status st = dp_check_rng(rng, p->allow_insecure_rng, err);
    if (st != PVG_OK) return st;
    size_t n = c->dom.n;
    if (p->k < 1 || p->k > n)
        return pvg_error_set(err, PVG_ERR_INVALID, "popular release: k must be in 1..%zu, got %zu",
                             n, p->k);
    pvg_dp_release_mech mech = p->mechanism;
    if (mech != PVG_DP_RELEASE_DEFAULT && mech != PVG_DP_RELEASE_GAUSSIAN &&
        mech != PVG_DP_RELEASE_LAPLACE && mech != PVG_DP_RELEASE_EXPONENTIAL_PEELING &&
        mech != PVG_DP_RELEASE_EXPONENTIAL_MONOTONE)
        return pvg_error_set(err, PVG_ERR_INVALID, "popular release: unknown mechanism %d",
                             (int)mech);
    if (mech == PVG_DP_RELEASE_DEFAULT) mech = PVG_DP_RELEASE_EXPONENTIAL_MONOTONE;
    int gaussian = mech == PVG_DP_RELEASE_GAUSSIAN;
    if (!(mech == PVG_DP_RELEASE_EXPONENTIAL_PEELING ||
          mech == PVG_DP_RELEASE_EXPONENTIAL_MONOTONE) &&
        c->m > ((int64_t)1 << 30))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "popular release: %s needs a bound max_items_per_user <= 2^30, got "
                             "%lld",
                             pvg_dp_release_mech_name(mech, 0), (long long)c->m);
    double m = (double)c->m;
    pvg_dp_popular *r = calloc(1, sizeof *r);
    if (r) r->items = calloc(p->k, sizeof *r->items);
    if (!r || !r->items) {
        pvg_dp_popular_free(r);
        return pvg_error_set(err, PVG_ERR_NOMEM, "popular release: out of memory");
    }
    r->n = p->k;
    pvg_dp_release_info *in = &r->info;
    in->mechanism = pvg_dp_release_mech_name(mech, 0);
    in->max_items_per_user = c->m;
    in->n_candidates = n;
    in->l1_sensitivity = m;
    in->l2_sensitivity = sqrt(m);

    if (mech == PVG_DP_RELEASE_EXPONENTIAL_PEELING) {
        /* one shopper moves every count by 0 or 1 in the same direction:
         * utility sensitivity 1; k rounds with epsilon/k (pvg_dp_top_k) */
        size_t *pick = malloc(p->k * sizeof *pick);
        if (!pick) {
            pvg_dp_popular_free(r);
            return pvg_error_set(err, PVG_ERR_NOMEM, "popular release: out of memory");
        }
        st = pvg_dp_top_k(rng, c->count, n, p->k, 1, p->epsilon, p->allow_insecure_rng, pick, err);
        if (st == PVG_OK)
            for (size_t i = 0; i < p->k; i++) {
                r->items[i].item = c->dom.ids[pick[i]];
                r->items[i].noisy_count = -1;
            }
        free(pick);
        if (st != PVG_OK) {
            pvg_dp_popular_free(r);
            return st;
        }
        in->epsilon = p->epsilon;
        in->delta = 0;
        in->l1_sensitivity = in->l2_sensitivity = 1; /* of the utility */
        *out = r;
        return PVG_OK;
    }

    if (mech == PVG_DP_RELEASE_EXPONENTIAL_MONOTONE) {
        st = monotone_peeling(c, rng, p, r, err);
        if (st != PVG_OK) {
            pvg_dp_popular_free(r);
            return st;
        }
        *out = r;
        return PVG_OK;
    }

    rel_noise nz;
    /* item counts: L1 = m, L2^2 = m (release.h) */
    st = rel_noise_make(gaussian, m, m, p->epsilon, p->delta, &nz, err);
    if (st != PVG_OK) {
        pvg_dp_popular_free(r);
        return st;
    }
    ranked *all = malloc(n * sizeof *all);
    if (!all) {
        pvg_dp_popular_free(r);
        return pvg_error_set(err, PVG_ERR_NOMEM, "popular release: out of memory");
    }
    for (size_t i = 0; i < n; i++) { /* noise on EVERY candidate */
        all[i].noisy = c->count[i] + rel_noise_draw(rng, &nz);
        all[i].pos = i;
    }
    qsort(all, n, sizeof *all, cmp_ranked);
    for (size_t i = 0; i < p->k; i++) {
        r->items[i].item = c->dom.ids[all[i].pos];
        r->items[i].noisy_count = all[i].noisy;
    }
    free(all);
    in->epsilon = nz.epsilon;
    in->delta = nz.delta;
    in->noise_scale = nz.scale;
    *out = r;
    return PVG_OK;
}
