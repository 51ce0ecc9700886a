/*
 * fl_internal.h - internals of federated training shared by fedcf.c
 * (model, broadcast, client solve, server step) and fl_dp.c (encoding for
 * secure aggregation, discrete Gaussian noise, accounting), and the
 * in-process trainer used by tests and benchmarks.
 *
 * The update vector of one client, before encoding (docs/federated.md):
 *   [0, n*k)          R: rows j of its items: ((c_uj - alpha0)(x_u.v_j) - c_uj) x_u
 *   [n*k, n*k+n)      N: s for each of its items (the per-item count)
 *   [n*k+n, +k(k+1)/2) s times the upper triangle of x_u x_u^T, row by row
 *   [.., +1)          W: s (the client count)
 * with public block scales s = PVG_FL_SCALE_N for N, PVG_FL_SCALE_T for T and W (so that the item
 * rows R carry most of a clipped vector's norm); padded with zeros to a multiple of the rotation
 * block. With cfg.update == PVG_FL_UPDATE_STATS the R rows are c_uj x_u/|x_u| and T holds the
 * unit direction's x x^T (same dimension; the server solves the items afresh).
 */
#ifndef PVG_FL_INTERNAL_H
#define PVG_FL_INTERNAL_H

#include <privguide/fl.h>

#include <stddef.h>
#include <stdint.h>

#define PVG_FL_MAGIC "PGFL"
#define PVG_FL_HEADER 88 /* bytes before the item factors */
#define PVG_FL_MAX_FACTORS 256
#define PVG_FL_BLOCK_MAX 4096 /* randomised Walsh-Hadamard block */
#define PVG_FL_SCALE_N 0.1    /* block scales (public): item counts */
#define PVG_FL_SCALE_T 0.1    /* the user Gramian and the client count */

/* The encoding parameters every party derives from the public config and d. */
typedef struct fl_code {
    size_t d_raw; /* length of the real update vector */
    size_t d;     /* padded: a multiple of block */
    size_t block; /* rotation block (power of two) */
    double gamma; /* quantisation step */
    double bound; /* L2 bound of the rounded integer vector (conditional rounding) */
    double sigma; /* total noise std on the sum, integer units (0: none) */
    uint64_t noise_num, noise_den; /* discrete Gaussian variance of one share (num/den):
                                      central: sigma^2; distributed: sigma^2/expected_cohort */
} fl_code;

/* Checks the public config (PVG_ERR_INVALID naming the field). */
pvg_status fl_config_check(const pvg_fl_config *c, pvg_error *err);
/* The public config of a broadcast from its header alone (the header's
 * checks and the exact length, as pvg_fl_broadcast_info; the item factors
 * and the Gramian are not read): for a client's checks that need no more. */
pvg_status fl_broadcast_header(const uint8_t *broadcast, size_t len, pvg_fl_config *cfg,
                               uint32_t *round, pvg_error *err);
/* Raw and padded dimensions; 0 when too large. */
size_t fl_dim_raw(uint32_t k, uint32_t n_items);
/* Derives the encoding for cfg and n_items. gamma: cfg->granularity when
 * > 0, else automatic (docs/federated.md). */
pvg_status fl_code_of(const pvg_fl_config *cfg, uint32_t n_items, fl_code *out, pvg_error *err);

/* Client encoding: u[0..d_raw) (real, modified: clipped in place, the
 * buffer must have room for code->d doubles) -> vec[0..d) mod 2^bits:
 * clip to L2 <= clip, rotate (signs from seed, round), scale by 1/gamma,
 * conditional randomised rounding, add the client's noise share when
 * distributed. */
pvg_status fl_encode(const pvg_fl_config *cfg, const fl_code *code, uint32_t round, double *u,
                     pvg_rng *rng, uint32_t *vec, pvg_error *err);
/* fl_encode from the update's nonzero entries: idx ascending, each below
 * code->d_raw, val their values (nnz of each; not modified). The same vector
 * and the same draws from rng as fl_encode over the dense update, one
 * rotation block (code->block doubles) in memory at a time; a block with no
 * entry rounds to zero and takes no draw. PVG_ERR_INTERNAL when idx is not
 * ascending or out of range. */
pvg_status fl_encode_sparse(const pvg_fl_config *cfg, const fl_code *code, uint32_t round,
                            const uint32_t *idx, const double *val, size_t nnz, pvg_rng *rng,
                            uint32_t *vec, pvg_error *err);
/* Server decoding of a sum mod 2^bits: optional central noise (rng), centre,
 * scale by gamma, inverse rotation. out[0..d) (d doubles). */
pvg_status fl_decode(const pvg_fl_config *cfg, const fl_code *code, uint32_t round,
                     const uint32_t *sum, int add_central_noise, pvg_rng *rng, double *out,
                     pvg_error *err);

/* ---- the in-process trainer (tests, benchmarks) ---- */

/* The clients: row u of a CSR over n_items (items ascending, weights). */
typedef struct fl_clients {
    size_t n_users;
    uint32_t n_items;
    const uint64_t *indptr;
    const uint32_t *items;
    const float *weights; /* may be NULL */
} fl_clients;

typedef struct fl_round_stats {
    uint32_t cohort; /* clients sampled (all survive in-process) */
    double client_seconds, server_seconds;
} fl_round_stats;

/* One round: Poisson-samples each client with probability q (q >= 1: all),
 * runs pvg_fl_client_update for each, sums the vectors mod 2^bits and
 * applies the sum. rng: sampling, rounding, noise. */
pvg_status fl_sim_round(pvg_fl_model *m, const fl_clients *cl, double q, pvg_rng *rng,
                        fl_round_stats *st, pvg_error *err);

/* The user factor a client with these items would solve from the current
 * model (for evaluation). x: k floats. */
pvg_status fl_model_user_factor(const pvg_fl_model *m, const uint32_t *items, const float *weights,
                                size_t n, float *x, pvg_error *err);

/* The model's config (borrowed). */
const pvg_fl_config *fl_model_config(const pvg_fl_model *m);

#endif
