/*
 * privguide/dp.h - differential privacy: exact noise samplers, mechanisms
 * and privacy accountants.
 *
 * Noise. Every sampler takes a pvg_rng (production: pvg_rng_new_secure) and
 * uses only integer arithmetic on the sampling path: Bernoulli(exp(-gamma))
 * for rational gamma, geometric, discrete Laplace and discrete Gaussian
 * follow Canonne, Kamath & Steinke, "The Discrete Gaussian for Differential
 * Privacy" (NeurIPS 2020). Real-valued releases are rounded to a
 * power-of-two grid and receive integer noise on that grid, with the
 * sensitivity inflated by one grid step for the rounding (the secure-noise
 * design of Google's differential-privacy library), so no floating-point
 * artefact (Mironov 2012) can leak the input. Floating point appears only in
 * calibration (choosing a scale), always rounded towards more noise.
 *
 * Mechanisms that release data refuse the test-only deterministic generator
 * with PVG_ERR_POLICY unless `allow_insecure_rng` is set (tests,
 * reproducible benchmarks; privguide/rng.h, pvg_rng_require_secure).
 *
 * Accounting. Basic and advanced composition, zCDP, Renyi DP of the Gaussian
 * and the Poisson-subsampled Gaussian mechanisms (Mironov, Talwar & Zhang
 * 2019) at integer and fractional orders, RDP -> (epsilon, delta) conversion
 * (classic, and the improved conversion of Balle et al. 2020, the default),
 * and a privacy-loss-distribution accountant (pessimistic discretisation,
 * FFT self-composition) for the tightest figures. Neighbouring relation:
 * add or remove one unit (for privguide, one shopper).
 *
 * Thread-safety: all functions are reentrant; an rng must not be shared
 * between threads.
 */
#ifndef PRIVGUIDE_DP_H
#define PRIVGUIDE_DP_H

#include <privguide/common.h>
#include <privguide/rng.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

/* ==== exact samplers (integer arithmetic only) ========================== */

/* 1 with probability num/den, else 0. Requires den > 0 and num <= den
 * (num > den is treated as den). */
int pvg_dp_bernoulli(pvg_rng *rng, uint64_t num, uint64_t den);

/* 1 with probability exp(-num/den) for any num >= 0, den > 0 (CKS Alg. 1
 * with the integer part peeled off as independent exp(-1) trials). */
int pvg_dp_bernoulli_exp(pvg_rng *rng, uint64_t num, uint64_t den);

/* X >= 0 with P(X = x) proportional to exp(-x * den / num), i.e. a geometric
 * variable with success probability 1 - exp(-den/num). num, den > 0, same
 * bounds as the discrete Laplace. */
uint64_t pvg_dp_geometric(pvg_rng *rng, uint64_t num, uint64_t den);

/* Discrete Laplace of scale b = num/den: P(X = x) proportional to
 * exp(-|x| / b) on the integers (CKS Alg. 2). num, den > 0, num < 2^62,
 * b <= 2^40 (beyond, the far tail saturates at 2^63 - 1). */
int64_t pvg_dp_discrete_laplace(pvg_rng *rng, uint64_t num, uint64_t den);

/* Discrete Gaussian of variance parameter sigma^2 = num/den: P(X = x)
 * proportional to exp(-x^2 / (2 sigma^2)) on the integers (CKS Alg. 3).
 * num, den > 0, num < 2^48, den < 2^24. */
int64_t pvg_dp_discrete_gaussian(pvg_rng *rng, uint64_t num, uint64_t den);

/* ==== calibration helpers (deterministic, floating point) =============== */

/* The probability mass function of the discrete Laplace of scale b at x,
 * and P(|X| > k). For tests and confidence intervals. */
double pvg_dp_discrete_laplace_pmf(double b, int64_t x);
double pvg_dp_discrete_laplace_tail(double b, int64_t k);

/* The pmf of the discrete Gaussian with variance parameter sigma2 at x
 * (normalising constant summed to double precision). */
double pvg_dp_discrete_gaussian_pmf(double sigma2, int64_t x);

/* The delta of the Gaussian mechanism N(0, sigma^2) for L2 sensitivity
 * `sens` at `epsilon` (exact, Balle & Wang 2018 Thm 8):
 *   delta = Phi(sens/(2 sigma) - eps sigma/sens)
 *         - e^eps Phi(-sens/(2 sigma) - eps sigma/sens). */
double pvg_dp_gaussian_delta(double sigma, double epsilon, double sens);

/* The analytic Gaussian mechanism (Balle & Wang 2018): the smallest sigma
 * with pvg_dp_gaussian_delta(sigma, epsilon, sens) <= delta, to 1e-12
 * relative (the returned sigma always meets delta). Errors: PVG_ERR_INVALID
 * for epsilon <= 0, delta outside (0,1), sens <= 0. */
pvg_status pvg_dp_gaussian_sigma(double epsilon, double delta, double sens, double *sigma,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* The exact delta of the discrete Gaussian with variance parameter sigma2
 * for integer sensitivity `sens` at epsilon (CKS Thm 7), by summation. */
double pvg_dp_discrete_gaussian_delta(double sigma2, double epsilon, int64_t sens);

/* The delta of `groups` independent discrete Gaussians (each variance
 * parameter sigma2) when one user moves up to `groups` coordinates, each by
 * an integer of magnitude <= sens: the multivariate case, where the
 * coordinates move together. The worst case is every coordinate moved by
 * sens (a shift family with monotone likelihood ratio is dominated by its
 * largest shift, and domination survives composition), and there the
 * privacy loss depends on the output only through the sum of its
 * coordinates, so delta is computed exactly from the pmf of the sum of
 * `groups` discrete Gaussians: by convolution when sigma2 < 16; above, that
 * pmf equals N_Z(0, groups sigma2) up to an additive error bounded by
 * Poisson summation (added to the result), and this is CKS Thm 7 with
 * variance groups * sigma2 and sensitivity groups * sens. Returns 1 when the
 * computation would need more than ~10^9 operations. groups >= 1, sens >= 1. */
double pvg_dp_discrete_gaussian_delta_multi(double sigma2, double epsilon, int64_t sens,
                                            long groups);

/* ==== mechanisms ======================================================== */

/* How a real or integer value was released. */
typedef struct pvg_dp_noise_info {
    const char *mechanism;         /* static: "discrete-laplace", "discrete-gaussian" */
    double scale;                  /* Laplace scale b or Gaussian sigma, in value units */
    double granularity;            /* grid step g (1 for integer releases) */
    double sensitivity;            /* the sensitivity used, inflated for rounding */
    double ci95;                   /* half-width of the 95% interval of the noise */
    double epsilon, delta;         /* the guarantee of this one release */
    uint64_t noise_num, noise_den; /* the integer sampler's exact parameter: Laplace
                                      scale or Gaussian sigma^2 = num/den grid steps;
                                      further draws of the same mechanism may reuse it
                                      (pvg_dp_discrete_laplace / _gaussian) */
} pvg_dp_noise_info;

/* Adds discrete Laplace noise of scale ceil-rounded sens/epsilon to an
 * integer value with integer L1 sensitivity `sens` >= 1: epsilon-DP.
 * info (may be NULL) describes the release. Errors: PVG_ERR_INVALID (bad
 * parameters, scale above 2^40), PVG_ERR_POLICY (the deterministic
 * generator without allow_insecure_rng). */
pvg_status pvg_dp_laplace_int(pvg_rng *rng, int64_t value, int64_t sens, double epsilon,
                              int allow_insecure_rng, int64_t *out, pvg_dp_noise_info *info,
                              pvg_error *err) PVG_WARN_UNUSED;

/* Adds discrete Gaussian noise to an integer value with integer L2
 * sensitivity `sens`, sigma calibrated so that the discrete Gaussian meets
 * (epsilon, delta) exactly (CKS Thm 7). */
pvg_status pvg_dp_gaussian_int(pvg_rng *rng, int64_t value, int64_t sens, double epsilon,
                               double delta, int allow_insecure_rng, int64_t *out,
                               pvg_dp_noise_info *info, pvg_error *err) PVG_WARN_UNUSED;

/* Real-valued Laplace release: value rounded to a power-of-two grid g (about
 * 2^-20 of the scale), sensitivity inflated to sens + g, discrete Laplace on
 * the grid. epsilon-DP for |f(D) - f(D')| <= sens. */
pvg_status pvg_dp_laplace_real(pvg_rng *rng, double value, double sens, double epsilon,
                               int allow_insecure_rng, double *out, pvg_dp_noise_info *info,
                               pvg_error *err) PVG_WARN_UNUSED;

/* Real-valued Gaussian release on a power-of-two grid (sigma on the grid
 * between 2^10 and 2^11 steps), sensitivity inflated to sens + g, sigma
 * calibrated for the discrete Gaussian. (epsilon, delta)-DP. */
pvg_status pvg_dp_gaussian_real(pvg_rng *rng, double value, double sens, double epsilon,
                                double delta, int allow_insecure_rng, double *out,
                                pvg_dp_noise_info *info, pvg_error *err) PVG_WARN_UNUSED;

/* Exponential mechanism over n candidates with integer utilities u[0..n)
 * of sensitivity `sens` >= 1: returns index i with probability proportional
 * to exp(eps' u_i / (2 sens)), where eps' is epsilon rounded down to a
 * multiple of 2^-32 (so the guarantee is at least epsilon). Exact rejection
 * sampling with Bernoulli(exp(-gamma)). Utilities must lie within 2^40 of
 * each other. */
pvg_status pvg_dp_exponential(pvg_rng *rng, const int64_t *u, size_t n, int64_t sens,
                              double epsilon, int allow_insecure_rng, size_t *index,
                              pvg_error *err) PVG_WARN_UNUSED;

/* Permute-and-flip (McKenna & Sheldon 2020): same contract and guarantee as
 * pvg_dp_exponential, never worse in expected utility. */
pvg_status pvg_dp_permute_and_flip(pvg_rng *rng, const int64_t *u, size_t n, int64_t sens,
                                   double epsilon, int allow_insecure_rng, size_t *index,
                                   pvg_error *err) PVG_WARN_UNUSED;

/* Report-noisy-max with discrete Laplace noise of scale (2 sens + 1) / epsilon
 * on integer utilities (ties broken uniformly at random; the +1 pays for the
 * ties of integer noise): epsilon-DP. */
pvg_status pvg_dp_report_noisy_max(pvg_rng *rng, const int64_t *u, size_t n, int64_t sens,
                                   double epsilon, int allow_insecure_rng, size_t *index,
                                   pvg_error *err) PVG_WARN_UNUSED;

/* DP top-k by peeling: k rounds of the exponential mechanism with epsilon/k
 * each, without replacement. out[0..k) gets distinct indices, best first.
 * epsilon-DP for utilities of sensitivity sens. k <= n. */
pvg_status pvg_dp_top_k(pvg_rng *rng, const int64_t *u, size_t n, size_t k, int64_t sens,
                        double epsilon, int allow_insecure_rng, size_t *out,
                        pvg_error *err) PVG_WARN_UNUSED;

/* DP partition selection by Laplace thresholding. Each user contributes to
 * at most `max_partitions` groups and counts once per group; a group with
 * `users` distinct users is kept when users + DLap(max_partitions/epsilon)
 * >= threshold, where threshold makes a one-user group appear with
 * probability at most delta / max_partitions. (epsilon, delta)-DP for the
 * set of kept groups (and for the noisy counts returned with them). */
typedef struct pvg_dp_partition_rule {
    double epsilon, delta;
    int64_t max_partitions;
    double scale;      /* Laplace scale of the noisy user count */
    int64_t threshold; /* keep when noisy count >= threshold */
} pvg_dp_partition_rule;
pvg_status pvg_dp_partition_rule_make(double epsilon, double delta, int64_t max_partitions,
                                      pvg_dp_partition_rule *rule, pvg_error *err) PVG_WARN_UNUSED;
/* 1 keep, 0 drop; *noisy_users (may be NULL) gets the noisy count. */
int pvg_dp_partition_keep(pvg_rng *rng, const pvg_dp_partition_rule *rule, int64_t users,
                          int64_t *noisy_users);

/* ---- local DP ---- */

/* k-ary randomized response: reports `value` (in [0,k)) with probability
 * p = e^eps / (e^eps + k - 1), else a uniformly chosen other value. p is
 * rounded down to a multiple of 2^-53, so the guarantee is at least eps. */
pvg_status pvg_dp_rr_report(pvg_rng *rng, uint32_t value, uint32_t k, double epsilon, uint32_t *out,
                            pvg_error *err) PVG_WARN_UNUSED;
/* Unbiased estimate of the number of users holding each value from the
 * histogram of reports: est[v] = (c_v - n q) / (p - q), q = (1-p)/(k-1). */
void pvg_dp_rr_estimate(const long long *counts, uint32_t k, double epsilon, double *est);

/* Optimized unary encoding (Wang et al. 2017): bits[v] = 1 w.p. 1/2 for the
 * true value, each other bit 1 w.p. q = 1/(e^eps + 1) (q rounded up to a
 * multiple of 2^-53). bits has k entries. */
pvg_status pvg_dp_oue_report(pvg_rng *rng, uint32_t value, uint32_t k, double epsilon,
                             unsigned char *bits, pvg_error *err) PVG_WARN_UNUSED;
/* est[v] = (c_v - n q) / (1/2 - q) from the per-bit counts of n reports. */
void pvg_dp_oue_estimate(const long long *bit_counts, uint32_t k, long long n, double epsilon,
                         double *est);

/* ==== accounting ======================================================== */

/* Basic composition: sums. */
void pvg_dp_compose_basic(const double *eps, const double *delta, size_t n, double *eps_out,
                          double *delta_out);

/* Advanced composition (Dwork, Rothblum & Vadhan 2010) of k (eps, delta)
 * mechanisms with slack delta_slack in (0,1): eps' = eps sqrt(2k ln(1/ds))
 * + k eps (e^eps - 1), delta' = k delta + ds. */
pvg_status pvg_dp_compose_advanced(double eps, double delta, long long k, double delta_slack,
                                   double *eps_out, double *delta_out,
                                   pvg_error *err) PVG_WARN_UNUSED;

/* zCDP (Bun & Steinke 2016): rho of the Gaussian mechanism, of pure
 * eps-DP, and conversion rho -> (eps, delta) by the optimal Renyi bound
 * eps = inf_a rho a + log(1/delta)/(a-1) + log(1-1/a) - log(a)/(a-1)
 * (CKS Prop. 12 form, never worse than rho + 2 sqrt(rho log(1/delta))). */
double pvg_dp_zcdp_gaussian(double sigma, double sens);
double pvg_dp_zcdp_from_pure(double eps);
double pvg_dp_zcdp_to_epsilon(double rho, double delta);

/* RDP of the Gaussian mechanism with noise multiplier sigma: a/(2 sigma^2). */
double pvg_dp_rdp_gaussian(double sigma, double order);

/* RDP at order `order` (> 1, integer or fractional, or INFINITY) of one
 * step of the Poisson-subsampled Gaussian mechanism with sampling rate q in
 * [0,1] and noise multiplier sigma >= 0 (Mironov, Talwar & Zhang 2019).
 * Integer orders: exact binomial expansion; fractional: the two convergent
 * series of Sec. 3.3. Returns INFINITY when unbounded or when the
 * fractional series does not converge. */
double pvg_dp_rdp_subsampled_gaussian(double q, double sigma, double order);

/* log A_alpha, the log of the alpha-th moment E_{z~mu0}[(mu(z)/mu0(z))^a]
 * used by the above (exposed for tests against numerical integration). */
double pvg_dp_log_moment_subsampled_gaussian(double q, double sigma, double order);

typedef enum pvg_dp_conversion {
    PVG_DP_CONVERSION_IMPROVED = 0, /* Balle et al. 2020 / Asoodeh et al. 2020 */
    PVG_DP_CONVERSION_CLASSIC = 1   /* Mironov 2017: rdp - log(delta)/(a-1) */
} pvg_dp_conversion;

/* The smallest epsilon over the given orders for target delta in (0,1).
 * *order_out (may be NULL) gets the optimal order. */
double pvg_dp_rdp_to_epsilon(const double *orders, const double *rdp, size_t n, double delta,
                             pvg_dp_conversion conv, double *order_out);

/* The smallest delta over the orders for target epsilon >= 0 (improved
 * conversion, Balle et al. 2020 Prop. 12, with the KL bound for small
 * orders). */
double pvg_dp_rdp_to_delta(const double *orders, const double *rdp, size_t n, double epsilon,
                           double *order_out);

/* The default orders: 1.1 to 10.9 by 0.1, 11 to 63, 128, 256, 512, 1024.
 * Writes up to max into out; returns the number of orders (155). */
size_t pvg_dp_default_orders(double *out, size_t max);

typedef enum pvg_dp_accountant {
    PVG_DP_ACCOUNTANT_RDP = 0,
    PVG_DP_ACCOUNTANT_PLD = 1
} pvg_dp_accountant;

/* Epsilon of `steps` compositions of the Poisson-subsampled Gaussian
 * (q, sigma) at target delta. orders/n_orders: NULL/0 for the defaults
 * (rdp only). *order_out (may be NULL) gets the optimal order (rdp) or 0.
 * Errors: PVG_ERR_INVALID for q outside [0,1], sigma < 0, steps < 0, delta
 * outside (0,1), orders <= 1. */
pvg_status pvg_dp_epsilon_subsampled_gaussian(double q, double sigma, long long steps, double delta,
                                              pvg_dp_accountant acc, pvg_dp_conversion conv,
                                              const double *orders, size_t n_orders,
                                              double *eps_out, double *order_out,
                                              pvg_error *err) PVG_WARN_UNUSED;

/* PLD accountant: delta(epsilon) and epsilon(delta) of `steps` compositions
 * of the Poisson-subsampled Gaussian, maximum over add and remove
 * adjacency, with losses discretised pessimistically on a grid of width
 * `interval` (0: 1e-4). */
pvg_status pvg_dp_pld_epsilon(double q, double sigma, long long steps, double delta,
                              double interval, double *eps_out, pvg_error *err) PVG_WARN_UNUSED;
pvg_status pvg_dp_pld_delta(double q, double sigma, long long steps, double epsilon,
                            double interval, double *delta_out, pvg_error *err) PVG_WARN_UNUSED;

/* The smallest noise multiplier sigma (to 1e-7 relative for rdp, 1e-5 for
 * pld, rounded up) for
 * which `steps` steps at sampling rate q give epsilon <= target at delta.
 * Errors: PVG_ERR_INVALID; PVG_ERR_UNSUPPORTED if no sigma up to 1e6 works. */
pvg_status pvg_dp_noise_multiplier(double target_eps, double delta, double q, long long steps,
                                   pvg_dp_accountant acc, double *sigma_out,
                                   pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
