/*
 * privguide/query.h - user-level differentially private statistics over the
 * store: count, sum, mean, quantile, histogram and top items, optionally
 * grouped by category, item, country or day.
 *
 * Unit of privacy: the shopper (all of one user's events). Before any noise,
 * each user's contribution is bounded:
 *   - at most `max_groups` distinct groups per user (those where the user
 *     has the most events; default 5 when grouped, 1 otherwise),
 *   - at most `max_contributions` events per user per group (default 10),
 *   - each value clamped to [clamp_lo, clamp_hi] (sum, mean, quantile,
 *     histogram; required for amounts and quantities).
 * Grouped outputs (item, category, country, day) are released through DP
 * partition selection on the number of distinct users per group, so a
 * group's existence does not reveal one user; half of epsilon goes to
 * selection and half to the values; delta goes all to selection with Laplace
 * value noise, half and half with Gaussian value noise. Histogram bins come from the
 * clamp range (public) and need no selection.
 *
 * Only users with analytics consent are read. The (epsilon, delta) of the
 * query is charged to the dataset's ledger (privguide/ledger.h) before any
 * result is returned; a refused charge returns PVG_ERR_BUDGET and no result.
 */
#ifndef PRIVGUIDE_QUERY_H
#define PRIVGUIDE_QUERY_H

#include <privguide/common.h>
#include <privguide/rng.h>
#include <privguide/store.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

typedef enum pvg_query_kind {
    PVG_QUERY_COUNT = 0,     /* number of events */
    PVG_QUERY_SUM = 1,       /* sum of clamped values */
    PVG_QUERY_MEAN = 2,      /* noisy sum / noisy count */
    PVG_QUERY_QUANTILE = 3,  /* exponential mechanism over a grid (ungrouped) */
    PVG_QUERY_HISTOGRAM = 4, /* event counts per value bin of the clamp range */
    PVG_QUERY_TOP_ITEMS = 5  /* items with the most distinct users */
} pvg_query_kind;

typedef enum pvg_query_value {
    PVG_QUERY_VALUE_QUANTITY = 0, /* event quantity */
    PVG_QUERY_VALUE_AMOUNT = 1,   /* event amount (money) */
    PVG_QUERY_VALUE_EVENTS = 2    /* per user (and group): the number of events */
} pvg_query_value;

typedef enum pvg_query_group {
    PVG_QUERY_GROUP_NONE = 0,
    PVG_QUERY_GROUP_CATEGORY = 1,
    PVG_QUERY_GROUP_ITEM = 2,
    PVG_QUERY_GROUP_COUNTRY = 3,
    PVG_QUERY_GROUP_DAY = 4
} pvg_query_group;

typedef enum pvg_query_noise {
    PVG_QUERY_NOISE_LAPLACE = 0,
    PVG_QUERY_NOISE_GAUSSIAN = 1 /* needs value_delta > 0 */
} pvg_query_noise;

typedef struct pvg_query_spec {
    pvg_query_kind kind;
    int event_type; /* pvg_event_type, or -1 for all; default purchase */
    pvg_query_value value;
    pvg_query_group group_by;
    int has_clamp;
    double clamp_lo, clamp_hi;
    long max_contributions; /* 0: default */
    long max_groups;        /* 0: default */
    double quantile; /* in (0,1), bounds excluded, for PVG_QUERY_QUANTILE (0 and 1 refused); init:
                        0.5 */
    int bins;        /* histogram bins; 0: 10 */
    int top;         /* top-items: how many at most; 0: 10 */
    pvg_query_noise noise;
    double epsilon;         /* > 0: the whole query's epsilon */
    double delta;           /* >= 0: the whole query's delta (grouped: > 0) */
    const char *dataset;    /* ledger; NULL: "default" */
    const char *what;       /* description for the ledger; NULL: derived */
    int allow_insecure_rng; /* tests and benchmarks only */
} pvg_query_spec;

/* Fills a spec with the defaults above (count of purchases, ungrouped). */
void pvg_query_spec_init(pvg_query_spec *spec);

typedef struct pvg_query_row {
    const char *group;   /* NULL when ungrouped; "[lo,hi)" for histogram bins */
    double value;        /* the noisy statistic */
    double ci_lo, ci_hi; /* 95% interval of the noise (mean: approximate; quantile: value range of
                            the rank error bound) */
    double count;        /* mean: the noisy count used; top-items: the noisy user count */
} pvg_query_row;

typedef struct pvg_query_result {
    size_t n_rows;
    pvg_query_row *rows;
    const char *mechanism; /* static string */
    double noise_scale;    /* value noise: Laplace b or Gaussian sigma */
    double epsilon, delta; /* charged */
    int64_t release_id;    /* ledger id */
    long long users; /* users read (with analytics consent); exact, not a DP figure: never printed
                        by the CLI */
    long long groups_seen; /* groups before selection (not a DP figure: never printed by the CLI) */
    long selection_threshold; /* partition selection: noisy users needed, or 0 */
    double sensitivity; /* of the noised statistic (count, sum, user counts): L1 (Laplace) or L2
                           (Gaussian) over groups */
    double count_sensitivity; /* mean: of the noised denominator (events or users), same norm; else
                                 0 */
    long max_contributions, max_groups;
    char what[256];
} pvg_query_result;

/* Runs the query. rng: pvg_rng_new_secure() (the deterministic generator is
 * refused with PVG_ERR_POLICY unless spec->allow_insecure_rng). On success *out is new
 * (pvg_query_result_free). Errors: PVG_ERR_INVALID (bad spec: err names the
 * field), PVG_ERR_BUDGET (ledger refused, err says what remains),
 * PVG_ERR_CRYPTO/PVG_ERR_IO from the store, PVG_ERR_NOMEM. */
pvg_status pvg_query_run(pvg_store *s, const pvg_query_spec *spec, pvg_rng *rng,
                         pvg_query_result **out, pvg_error *err) PVG_WARN_UNUSED;

void pvg_query_result_free(pvg_query_result *r);

/* Sensitivity of one released statistic when one shopper is added to (or
 * removed from) the data, after the contribution bounds. The statistic is a
 * vector with one coordinate per group (one coordinate when ungrouped); one
 * shopper moves at most `groups` coordinates, each by at most `per_group`, so
 * l1 = per_group * groups and l2 = per_group * sqrt(groups). These functions
 * are the only place the query engine derives a sensitivity (derivations in
 * src/dp/query.c and docs/dp.md). m: max_contributions, G: max_groups
 * (1 when ungrouped), both >= 1. */
typedef struct pvg_query_sensitivity {
    double per_group; /* largest move of one coordinate (L-infinity) */
    long groups;      /* most coordinates one shopper moves */
    double l1, l2;
} pvg_query_sensitivity;

/* count, histogram: events per group (at most m per group). */
pvg_query_sensitivity pvg_query_sensitivity_count(long m, long G);
/* sum of values: at most m values per group, each clamped to [lo, hi]. */
pvg_query_sensitivity pvg_query_sensitivity_sum_values(long m, long G, double lo, double hi);
/* sum with --value events: per group clamp(c, lo, hi), c in 1..m the
 * shopper's kept events there. */
pvg_query_sensitivity pvg_query_sensitivity_sum_events(long m, long G, double lo, double hi);
/* distinct users per group (mean denominator with --value events, top-items,
 * partition selection): 1 per group. */
pvg_query_sensitivity pvg_query_sensitivity_users(long G);

/* Names for the CLI: "count", "sum", ...; parse returns PVG_ERR_INVALID. */
pvg_status pvg_query_kind_parse(const char *name, pvg_query_kind *out) PVG_WARN_UNUSED;
const char *pvg_query_kind_name(pvg_query_kind k);
pvg_status pvg_query_group_parse(const char *name, pvg_query_group *out) PVG_WARN_UNUSED;
const char *pvg_query_group_name(pvg_query_group g);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
