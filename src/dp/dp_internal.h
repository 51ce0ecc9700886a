/*
 * dp_internal.h - helpers shared by the files of src/dp (not installed).
 */
#ifndef PVG_DP_INTERNAL_H
#define PVG_DP_INTERNAL_H

#include <privguide/dp.h>

typedef unsigned __int128 u128;

/* Bernoulli(exp(-num/den)) for 128-bit rationals, den > 0. */
int dp_bernoulli_exp128(pvg_rng *rng, u128 num, u128 den);
/* Bernoulli(exp(-diff^2/gden)) when diff^2 needs more than 128 bits. */
int dp_bern_exp_big(pvg_rng *rng, u128 diff, u128 gden);

/* log(erfc(x)) accurate for large x; log(Phi(x)) likewise. */
double dp_log_erfc(double x);
/* Standard normal upper tail P(Z > x) = erfc(x/sqrt2)/2. */
double dp_norm_sf(double x);

/* PVG_ERR_INVALID for a NULL generator, else pvg_rng_require_secure. */
pvg_status dp_check_rng(pvg_rng *rng, int allow_insecure_rng, pvg_error *err);

/* A calibrated additive-noise plan, reusable for many values of the same
 * sensitivity: value -> (round(value / g) + Z) g with Z ~ DLap(num/den) or
 * DGauss(sigma^2 = num/den); g = 1 for integer plans. */
typedef struct dp_plan {
    int gaussian;
    double g;
    uint64_t num, den;
    pvg_dp_noise_info info;
} dp_plan;

/* Calibrates a plan for a released vector of which one user moves at most
 * `groups` coordinates, each by at most `per_group` (L1 = per_group * groups
 * for Laplace, the L2 structure for Gaussian). integer: values are integers
 * and per_group is rounded up to an integer, g = 1. */
pvg_status dp_plan_make(int gaussian, int integer, double per_group, long groups, double epsilon,
                        double delta, dp_plan *p, pvg_error *err);
/* Applies the plan; PVG_ERR_INVALID when the value does not fit the grid. */
pvg_status dp_plan_apply(pvg_rng *rng, const dp_plan *p, double value, double *out, pvg_error *err);

/* Half-width of the 95% interval of a discrete Laplace of scale b. */
double lap_ci95_public(double b);

#endif
