/*
 * release_internal.h - helpers shared by src/dp/topk.c and src/dp/cooc.c
 * (not installed): the public candidate domain, per-shopper contribution
 * bounding and the calibration of vector-valued noise.
 */
#ifndef PVG_DP_RELEASE_INTERNAL_H
#define PVG_DP_RELEASE_INTERNAL_H

#include <privguide/release.h>

#include <stddef.h>
#include <stdint.h>

/* A public domain: ids in the caller's order, plus a sorted index. */
typedef struct rel_domain {
    size_t n;
    int64_t *ids;    /* caller order */
    int64_t *sorted; /* ascending */
    uint32_t *pos;   /* pos[r] = caller position of sorted[r] */
    size_t *scratch; /* n + 1 positions for one shopper */
} rel_domain;

/* Copies ids[0..n) (1 <= n < 2^32); PVG_ERR_INVALID on a duplicate. */
pvg_status rel_domain_init(rel_domain *d, const int64_t *ids, size_t n, pvg_error *err);
void rel_domain_clear(rel_domain *d);
/* Caller position of id, or -1. */
long rel_domain_find(const rel_domain *d, int64_t id);

/* One shopper's kept items: the distinct in-domain positions of items[0..n),
 * reduced to a uniformly random subset of m (drawn from rng) when there are
 * more, written ascending to d->scratch. Returns how many were kept. */
size_t rel_bound_user(rel_domain *d, pvg_rng *rng, const int64_t *items, size_t n, int64_t m);

/* The largest rho (to ~1e-9 relative, never above) whose zCDP guarantee
 * converts to at most epsilon at delta by pvg_dp_zcdp_to_epsilon; 0 when
 * none does. */
double rel_zcdp_rho_for(double epsilon, double delta);

/* A calibrated noise for a vector of integer counts. */
typedef struct rel_noise {
    int gaussian;
    uint64_t num, den; /* Laplace scale or Gaussian sigma^2 = num/den */
    double scale;      /* b or sigma */
    double epsilon, delta;
} rel_noise;

/* Laplace for L1 sensitivity l1 (integer >= 1) at epsilon, or the discrete
 * Gaussian for squared L2 sensitivity l2sq at (epsilon, delta) by zCDP
 * (release.h). */
pvg_status rel_noise_make(int gaussian, double l1, double l2sq, double epsilon, double delta,
                          rel_noise *nz, pvg_error *err);
int64_t rel_noise_draw(pvg_rng *rng, const rel_noise *nz);

#endif
