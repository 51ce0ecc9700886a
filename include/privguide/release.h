/*
 * privguide/release.h - differentially private releases of shopping
 * statistics that the platform shows to people other than the operator:
 * the popular list (DP top-k of distinct-buyer counts) and item
 * co-occurrence ("similar items").
 *
 * Both follow the same recipe, at user level (one shopper = one unit; the
 * neighbouring relation adds or removes one shopper with all their data):
 *
 *  1. A PUBLIC candidate domain, passed in by the caller: the operator's
 *     catalog as loaded (never the items that shoppers happened to touch,
 *     never event stubs). Items outside it are ignored; a candidate nobody
 *     bought still gets noise, so the released set reveals nothing by its
 *     membership.
 *  2. Contribution bounding: each shopper's DISTINCT in-domain items are
 *     reduced to at most m (max_items_per_user). When a shopper has more
 *     than m, a uniformly random subset of m is kept, drawn from the rng
 *     given to _add_user (pass the same secure generator as for the
 *     release). Every kept (shopper, item) pair weighs 1, every kept pair of
 *     items weighs 1 in the co-occurrence counts.
 *  3. Noise on EVERY coordinate of the domain (integer counts, exact
 *     discrete samplers of dp.h), then post-processing only (sorting,
 *     top-k, normalising): the release has the guarantee of the noisy
 *     vector.
 *
 * Sensitivities (one shopper added or removed, at most m kept items):
 *   item counts:      each kept item's count moves by 1, at most m of them:
 *                     L1 = m, L2 = sqrt(m).
 *   pair counts:      each pair of kept items moves by 1, at most
 *                     P = m(m-1)/2 pairs: L1 = P, L2 = sqrt(P).
 * Calibration:
 *   discrete Laplace: scale b = L1 / epsilon (rounded up): epsilon-DP.
 *   discrete Gaussian: sigma^2 such that the product of independent
 *     discrete Gaussians is rho-zCDP with rho = L2^2 / (2 sigma^2) (CKS 2020
 *     Thm 4 per coordinate, zCDP composition over coordinates), converted to
 *     (epsilon, delta) by pvg_dp_zcdp_to_epsilon; sigma^2 is rounded up. This
 *     holds for the whole vector however many coordinates move together
 *     (the one-dimensional bound CKS Thm 7 does not).
 *
 * Accounting: every release returns the (epsilon, delta) to charge in its
 * pvg_dp_release_info; a co-occurrence release whose domain came from a
 * popular release must be charged in addition to that popular release
 * (basic composition: the sum).
 *
 * Thread-safety: objects are not shared between threads while being
 * modified; an rng must not be shared between threads.
 */
#ifndef PRIVGUIDE_RELEASE_H
#define PRIVGUIDE_RELEASE_H

#include <privguide/common.h>
#include <privguide/rng.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

/* How the noisy vector is produced. */
typedef enum pvg_dp_release_mech {
    /* The measured best for the task (docs/dp.md, "Popular list and similar
     * items"): EXPONENTIAL_MONOTONE for the popular list, GAUSSIAN for
     * co-occurrence. */
    PVG_DP_RELEASE_DEFAULT = 0,
    PVG_DP_RELEASE_GAUSSIAN = 1, /* discrete Gaussian, (epsilon, delta) */
    PVG_DP_RELEASE_LAPLACE = 2,  /* discrete Laplace, epsilon (delta 0) */
    /* Popular list only, kept as the baseline it replaces: k rounds of the
     * exponential mechanism with epsilon/k each on the bounded counts
     * (utility sensitivity 1). Releases no counts (noisy_count = -1). */
    PVG_DP_RELEASE_EXPONENTIAL_PEELING = 3,
    /* Popular list only: k rounds of the exponential mechanism on the
     * counts, using that one shopper moves every count in the SAME
     * direction (by 0 or 1): each round picks i with probability
     * proportional to exp(eps0 u_i) (monotone utilities: eps0-DP, and
     * eps0-bounded-range, hence eps0^2/8-zCDP, Cesar & Rogers 2021). eps0 is
     * the larger of epsilon/k (basic composition, delta 0) and
     * sqrt(8 rho / k) with rho the zCDP budget that meets (epsilon, delta).
     * Releases no counts (noisy_count = -1). */
    PVG_DP_RELEASE_EXPONENTIAL_MONOTONE = 4
} pvg_dp_release_mech;

/* Static name: "discrete-gaussian-top-k", "discrete-laplace-top-k",
 * "exponential-peeling-top-k", "discrete-gaussian-cooc",
 * "discrete-laplace-cooc"; "?" otherwise. */
const char *pvg_dp_release_mech_name(pvg_dp_release_mech mech, int cooc);

/* What a release cost and how it was made. */
typedef struct pvg_dp_release_info {
    const char *mechanism;      /* static, see pvg_dp_release_mech_name */
    double epsilon, delta;      /* the guarantee; charge exactly this */
    int64_t max_items_per_user; /* m */
    double l1_sensitivity;      /* of the noisy count vector */
    double l2_sensitivity;
    double noise_scale;  /* Laplace b or Gaussian sigma, in counts (0: peeling) */
    size_t n_candidates; /* size of the public domain (items) */
} pvg_dp_release_info;

/* ==== bounded per-item distinct-shopper counts ========================== */

typedef struct pvg_dp_item_counts pvg_dp_item_counts;

/* New accumulator over the public domain candidates[0..n) (item ids chosen
 * by the caller, e.g. catalog row ids; copied; duplicates refused), each
 * shopper bounded to max_items_per_user >= 1 distinct in-domain items.
 * Errors: PVG_ERR_INVALID (n == 0, m < 1, duplicate id), PVG_ERR_NOMEM. */
pvg_status pvg_dp_item_counts_new(const int64_t *candidates, size_t n, int64_t max_items_per_user,
                                  pvg_dp_item_counts **out, pvg_error *err) PVG_WARN_UNUSED;

/* Adds one shopper: items[0..n) are the ids of everything this shopper
 * bought (borrowed; repeats and ids outside the domain are ignored). Call
 * it exactly once per shopper. rng draws the kept subset when the shopper
 * has more than m distinct in-domain items. Errors: PVG_ERR_NOMEM. */
pvg_status pvg_dp_item_counts_add_user(pvg_dp_item_counts *c, pvg_rng *rng, const int64_t *items,
                                       size_t n, pvg_error *err) PVG_WARN_UNUSED;

/* The exact bounded count of candidate i (tests and benchmarks only: never
 * show it to anyone). */
int64_t pvg_dp_item_counts_exact(const pvg_dp_item_counts *c, size_t i);
size_t pvg_dp_item_counts_size(const pvg_dp_item_counts *c);
/* The candidate id at position i (the caller's order). */
int64_t pvg_dp_item_counts_candidate(const pvg_dp_item_counts *c, size_t i);
void pvg_dp_item_counts_free(pvg_dp_item_counts *c);

/* ==== the popular list: DP top-k ========================================= */

typedef struct pvg_dp_popular_params {
    double epsilon; /* > 0 */
    double delta;   /* in (0,1) for the Gaussian; ignored (0) otherwise */
    size_t k;       /* 1..n_candidates; n_candidates gives the whole noisy ranking */
    pvg_dp_release_mech mechanism;
    int allow_insecure_rng; /* tests and reproducible benchmarks only */
} pvg_dp_popular_params;

/* Defaults: epsilon 1, delta 1e-7, k 20, PVG_DP_RELEASE_DEFAULT. */
void pvg_dp_popular_params_init(pvg_dp_popular_params *p);

/* "No bound" for max_items_per_user: the exponential mechanisms' utility
 * sensitivity is 1 whatever m, so they need none; the additive-noise
 * mechanisms refuse it (their sensitivity would be unbounded). */
#define PVG_DP_UNBOUNDED_ITEMS INT64_MAX

/* The bound m to build the counts with for a popular-list mechanism,
 * measured on Online Retail (docs/dp.md): PVG_DP_UNBOUNDED_ITEMS for the
 * exponential mechanisms (and DEFAULT), 64 for the Gaussian, 16 for the
 * Laplace. */
int64_t pvg_dp_popular_default_m(pvg_dp_release_mech mech);

typedef struct pvg_dp_popular_entry {
    int64_t item;        /* candidate id */
    int64_t noisy_count; /* DP distinct-shopper count; -1 for peeling */
} pvg_dp_popular_entry;

typedef struct pvg_dp_popular {
    pvg_dp_release_info info;
    size_t n;                    /* = k */
    pvg_dp_popular_entry *items; /* best first */
} pvg_dp_popular;

/* Releases the top-k: noise on every candidate's bounded count, then the k
 * largest noisy counts (ties: the earlier candidate first - a public order,
 * so still post-processing). The counts are not modified; each call is a
 * new release and must be charged. On success *out is new. Errors:
 * PVG_ERR_INVALID (parameters), PVG_ERR_POLICY (the deterministic generator
 * without allow_insecure_rng), PVG_ERR_NOMEM. */
pvg_status pvg_dp_popular_release(const pvg_dp_item_counts *c, pvg_rng *rng,
                                  const pvg_dp_popular_params *p, pvg_dp_popular **out,
                                  pvg_error *err) PVG_WARN_UNUSED;
void pvg_dp_popular_free(pvg_dp_popular *r);

/* ==== item co-occurrence: DP similar items ============================== */

/*
 * The noisy vector of a co-occurrence release holds, over the domain of n
 * items, every item's bounded buyer count (n coordinates) and every pair's
 * bounded co-buyer count (n(n-1)/2 coordinates). One shopper with at most m
 * kept items moves m item coordinates and at most P = m(m-1)/2 pair
 * coordinates, each by 1:
 *   L1 = m + P = m(m+1)/2,   L2^2 = m + P = m(m+1)/2.
 * Similar items are post-processing of that vector: score(i, j) =
 * noisy_cooc(i,j) / sqrt(max(noisy_pop_i, floor) max(noisy_pop_j, floor)),
 * over pairs with a positive noisy count.
 */
typedef struct pvg_dp_cooc_counts pvg_dp_cooc_counts;

/* New accumulator over the public domain items[0..n) (2 <= n <= 5000; for
 * a large catalog pass the top-N of a popular release, whose cost is then
 * charged as well), each shopper bounded to max_items_per_user in 2..1024
 * distinct in-domain items (uniformly random subset, as above). Memory:
 * 4 n(n-1)/2 bytes. */
pvg_status pvg_dp_cooc_counts_new(const int64_t *items, size_t n, int64_t max_items_per_user,
                                  pvg_dp_cooc_counts **out, pvg_error *err) PVG_WARN_UNUSED;
/* One shopper's purchases (as pvg_dp_item_counts_add_user). */
pvg_status pvg_dp_cooc_counts_add_user(pvg_dp_cooc_counts *c, pvg_rng *rng, const int64_t *items,
                                       size_t n, pvg_error *err) PVG_WARN_UNUSED;
/* Exact bounded counts (tests only): pair i != j, or item i when i == j;
 * positions in the caller's domain order. */
int64_t pvg_dp_cooc_counts_exact(const pvg_dp_cooc_counts *c, size_t i, size_t j);
void pvg_dp_cooc_counts_free(pvg_dp_cooc_counts *c);

typedef struct pvg_dp_cooc_params {
    double epsilon, delta;         /* delta ignored for Laplace */
    size_t k;                      /* neighbours kept per item, 1..n-1 */
    double pop_floor;              /* normalisation floor for noisy popularity; 0: automatic,
                                      3 noise sigmas (Laplace: 3 b), so that items with a tiny
                                      noisy count cannot inflate pure-noise pairs */
    pvg_dp_release_mech mechanism; /* DEFAULT (Gaussian), GAUSSIAN or LAPLACE */
    int allow_insecure_rng;
} pvg_dp_cooc_params;

/* Defaults: epsilon 1, delta 1e-7, k 10, pop_floor 0 (automatic), DEFAULT. */
void pvg_dp_cooc_params_init(pvg_dp_cooc_params *p);

/* The default bound m for co-occurrence (measured on Online Retail,
 * docs/dp.md). */
#define PVG_DP_COOC_DEFAULT_M 16

typedef struct pvg_dp_similar {
    int64_t item;       /* neighbour id */
    double score;       /* normalised noisy co-occurrence */
    int64_t noisy_cooc; /* the noisy pair count */
} pvg_dp_similar;

typedef struct pvg_dp_cooc {
    pvg_dp_release_info info; /* this release alone (not the domain's popular list) */
    size_t n_items;           /* domain size */
    size_t k;                 /* row capacity */
    int64_t *items;           /* the domain, ascending */
    int64_t *noisy_pop;       /* per items[r]: noisy buyer count */
    size_t *n_similar;        /* valid entries of each row */
    pvg_dp_similar *similar;  /* row r (item items[r]) at similar + r k, best first */
} pvg_dp_cooc;

/* Releases similar items: noise on every coordinate (item and pair counts)
 * of the domain, then each item's k best neighbours. The counts are not
 * modified; each call is a new release to charge (info). On success *out is
 * new. Errors: PVG_ERR_INVALID (parameters), PVG_ERR_POLICY (the
 * deterministic generator without allow_insecure_rng), PVG_ERR_NOMEM. */
pvg_status pvg_dp_cooc_release(const pvg_dp_cooc_counts *c, pvg_rng *rng,
                               const pvg_dp_cooc_params *p, pvg_dp_cooc **out,
                               pvg_error *err) PVG_WARN_UNUSED;

/* The neighbours of `item` (borrowed from r, best first); PVG_ERR_NOT_FOUND
 * when item is outside the domain. */
pvg_status pvg_dp_cooc_similar(const pvg_dp_cooc *r, int64_t item, const pvg_dp_similar **out,
                               size_t *n, pvg_error *err) PVG_WARN_UNUSED;

/* Serialises the release as one JSON object, to cache and serve it later:
 *   {"format": "privguide-dp-cooc/1", "mechanism", "epsilon", "delta",
 *    "max_items_per_user", "l1_sensitivity", "l2_sensitivity",
 *    "noise_scale", "n_candidates", "k",
 *    "items": [[item, noisy_pop, [[neighbour, score, noisy_cooc], ...]], ...]}
 * *json_out is new (pvg_free). Everything in it is DP (public once
 * released). */
pvg_status pvg_dp_cooc_to_json(const pvg_dp_cooc *r, char **json_out,
                               pvg_error *err) PVG_WARN_UNUSED;
/* Parses what pvg_dp_cooc_to_json wrote; PVG_ERR_CORRUPT names the field
 * that is missing or malformed. On success *out is new; info.mechanism
 * points to a static name. */
pvg_status pvg_dp_cooc_from_json(const char *json, pvg_dp_cooc **out,
                                 pvg_error *err) PVG_WARN_UNUSED;
void pvg_dp_cooc_free(pvg_dp_cooc *r);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
