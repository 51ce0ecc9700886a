/*
 * t_audit_cp.h - helpers for empirical privacy audits (linked into every
 * test): exact Clopper-Pearson intervals and the epsilon lower bound of a
 * distinguishing event.
 */
#ifndef PVG_T_AUDIT_CP_H
#define PVG_T_AUDIT_CP_H

/* The regularised incomplete beta function I_x(a, b), a, b > 0. */
double t_ibeta(double a, double b, double x);

/* Clopper-Pearson interval for k successes in n trials at two-sided level
 * 1 - alpha: P(lo <= p <= hi) >= 1 - alpha. */
void t_clopper_pearson(long k, long n, double alpha, double *lo, double *hi);

/* A lower confidence bound on epsilon from an event seen k1 times in n1
 * runs on D' and k0 times in n0 runs on D: log((p1_lo - delta) / p0_hi),
 * each probability at level alpha (-INFINITY when p1_lo <= delta). *hat
 * (may be NULL) gets the point estimate log((k1/n1 - delta) / (k0/n0)). */
double t_eps_lower_bound(long k1, long n1, long k0, long n0, double delta, double alpha,
                         double *hat);

/* The matching upper confidence bound: log((p1_hi - delta) / p0_lo)
 * (+INFINITY when p0_lo = 0, -INFINITY when p1_hi <= delta). With
 * t_eps_lower_bound, a confidence interval (level 1 - 2 alpha per side pair)
 * for the log-ratio of the event's probabilities. */
double t_eps_upper_bound(long k1, long n1, long k0, long n0, double delta, double alpha);

#endif
