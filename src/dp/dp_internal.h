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

/* Refuses the deterministic generator unless allowed. */
pvg_status dp_check_rng(pvg_rng *rng, int allow_insecure, pvg_error *err);

#endif
