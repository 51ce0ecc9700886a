/*
 * privguide/fl.h - federated training of the implicit-feedback recommender
 * (iALS) with secure aggregation and client-level differential privacy.
 *
 * The server holds the item factors V (n_items x k). Each round it
 * broadcasts the configuration, the round number, V and the Gramian V^T V
 * (pvg_fl_model_broadcast). A client holding one shopper's interactions
 * parses the broadcast, solves its own user factor x_u in closed form as
 * iALS does (the Gramian makes the unobserved-weight term free), computes
 * its contribution to the item update, clips it to L2 norm <= clip,
 * quantises it to integers modulo 2^bits and (with distributed DP) adds
 * its share of discrete Gaussian noise (pvg_fl_client_update). The
 * transport sums the clients' vectors through secure aggregation; the
 * server decodes the sum and takes a step on V (pvg_fl_model_apply).
 * The user factor and the shopper's events never leave the client.
 * docs/federated.md derives the update and states the privacy guarantee.
 *
 * Thread-safety: a model is used by one thread at a time; the client
 * functions are reentrant.
 */
#ifndef PRIVGUIDE_FL_H
#define PRIVGUIDE_FL_H

#include <privguide/common.h>
#include <privguide/rng.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

/* Server optimisers. */
#define PVG_FL_FEDAVG 0  /* v <- v - server_lr * (preconditioned mean step) */
#define PVG_FL_FEDADAM 1 /* Adam on the (preconditioned) pseudo-gradient */

/* Client-level DP modes. */
#define PVG_FL_DP_NONE 0
#define PVG_FL_DP_CENTRAL 1     /* the server adds Gaussian noise to the unmasked sum */
#define PVG_FL_DP_DISTRIBUTED 2 /* each client adds a discrete Gaussian share (DDG) */

/* What a client sends for the item update (the broadcast's byte 7;
 * docs/federated.md "Which update" and "The sufficient-statistics form").
 * gradient: the item rows' loss gradient; the server takes a preconditioned
 * step from the current factors. stats: DP-iALS's sufficient statistics,
 * rows c_uj x_u/|x_u|; the server solves every item afresh. */
#define PVG_FL_UPDATE_GRADIENT 0
#define PVG_FL_UPDATE_STATS 1

/* The version byte of the broadcast wire format. */
#define PVG_FL_WIRE_VERSION 1

/* The most clients one round may sum (SecAgg's PVG_SECAGG_MAX_CLIENTS). */
#define PVG_FL_MAX_COHORT 65535

/* One training configuration, public, sent to every client in the round's
 * broadcast. pvg_fl_config_default fills sensible values. */
typedef struct pvg_fl_config {
    uint32_t factors;        /* k, 1..256 */
    double reg, alpha;       /* user solve: (alpha0 G + V^T C_u V + reg_u I) x_u = V^T C_u p_u
                                with reg_u = reg (|I_u| + alpha0 |I|) (items alike),
                                confidence c = 1 + alpha * log1p(weight), 0: binary */
    double alpha0;           /* unobserved weight, as iALS (see docs/models.md) */
    double clip;             /* C: L2 bound of one client's item-update vector */
    int optimizer;           /* PVG_FL_FEDAVG or PVG_FL_FEDADAM */
    double server_lr;        /* server step size (FedAvg: 1 applies the mean) */
    int dp;                  /* PVG_FL_DP_NONE, PVG_FL_DP_CENTRAL, PVG_FL_DP_DISTRIBUTED */
    double noise_multiplier; /* z: noise std = z * C on the sum */
    double expected_cohort;  /* q * N: the cohort size the noise is split over (distributed DDG) */
    unsigned bits;           /* modulus bits of the SecAgg sum: 32 (16..32) */
    /* Added fields (after the FL-API ones): */
    double granularity;     /* quantisation step gamma of the encoding (0: chosen from clip,
                               noise and bits, see pvg_fl_config_default) */
    uint64_t seed;          /* public per-model seed of the random rotation (DDG) */
    int allow_insecure_rng; /* accept the deterministic test generator for noise (tests,
                               benchmarks only; privguide/rng.h) */
    int update;             /* PVG_FL_UPDATE_GRADIENT (default) or PVG_FL_UPDATE_STATS; sent in
                               the broadcast */
    double noise_ridge;     /* server only, not sent: kappa >= 0 adds kappa * z * clip to every
                               item's ridge (post-processing of the noisy sum; 0: none) */
    int average_solves;     /* server only, not sent: 1 with the statistics form and FedAvg makes
                               the item factors the running mean of every round's fresh solve
                               (round r steps by 1/r in place of server_lr): post-processing that
                               averages the rounds' independent noise (docs/federated.md); 0: the
                               step of server_lr */
} pvg_fl_config;

/* Fills cfg with defaults: k = 32, reg = 0.1, alpha = 0 (binary), alpha0 =
 * 0.1, clip = 1e3 (effectively no clipping), FedAvg with server_lr = 1, no
 * DP, expected_cohort = 100, bits = 32, granularity 0 (automatic), seed 0,
 * allow_insecure_rng 0, update PVG_FL_UPDATE_GRADIENT, noise_ridge 0, average_solves 0. reg and
 * alpha0 should match the centralised model they replace (alpha0 = alpha_c nnz / (|U| |I|),
 * docs/models.md). */
void pvg_fl_config_default(pvg_fl_config *cfg);

/* Sets cfg's encoding for rounds that sum at most max_cohort clients' updates in a
 * lane_bits-bit SecAgg lane (16 or 32) so that the sum cannot wrap (with overwhelming
 * probability: 8 sub-Gaussian scales of the rotated, clipped updates plus 8 noise stds fit in
 * half the modulus, docs/federated.md "The cohort bound"). cfg holds the model and DP settings
 * (factors, clip, dp, noise_multiplier; granularity 0 for the automatic step, or a chosen one,
 * which is then only checked). On success: cfg->bits = lane_bits; cfg->expected_cohort =
 * min_survivors with distributed DP (each client's noise share is sigma^2 / min_survivors, and
 * the step leaves room for max_cohort shares: z sqrt(max_cohort / min_survivors) on the sum),
 * max_cohort otherwise; cfg->granularity the step for max_cohort clients. cfg is unchanged on
 * error. Errors: PVG_ERR_INVALID naming the field (source "lane_bits", "max_cohort" when the lane
 * cannot hold that many clients' sum, "min_survivors", or the config's own field). */
pvg_status pvg_fl_config_for_cohort(pvg_fl_config *cfg, uint32_t n_items, unsigned lane_bits,
                                    uint32_t max_cohort, uint32_t min_survivors,
                                    pvg_error *err) PVG_WARN_UNUSED;

/* Checks that cfg's encoding (cfg->bits, its resolved step) holds the sum of max_cohort
 * clients' clipped and noised updates without wrapping, by the bound of
 * pvg_fl_config_for_cohort, and, with distributed DP, that min_survivors is at least the
 * expected cohort the noise is split over (max_cohort too). The coordinator calls it on the
 * config it is given (pvg_fl_coord_options fl_config). Errors: PVG_ERR_INVALID, source
 * "max_cohort" (the lane cannot hold the sum) or "min_survivors", or the config's field. */
pvg_status pvg_fl_config_check_cohort(const pvg_fl_config *cfg, uint32_t n_items,
                                      uint32_t max_cohort, uint32_t min_survivors,
                                      pvg_error *err) PVG_WARN_UNUSED;

typedef struct pvg_fl_model pvg_fl_model; /* server side: item factors + optimiser state + round */

/* new: a model with item factors drawn N(0, 0.1^2/k) from rng (the
 * deterministic generator is fine: initialisation is not private).
 * Errors: PVG_ERR_INVALID (config out of range, n_items 0 or too large for
 * the update dimension to fit in 2^31 words), PVG_ERR_NOMEM. */
pvg_status pvg_fl_model_new(const pvg_fl_config *cfg, uint32_t n_items, pvg_rng *rng,
                            pvg_fl_model **out, pvg_error *err) PVG_WARN_UNUSED;
void pvg_fl_model_free(pvg_fl_model *m);

/* A public item-item similarity, sparse (CSR): row i's neighbours are
 * col[row_ptr[i] .. row_ptr[i+1]) with values val[same] (finite, >= 0; a
 * column at most once per row; the diagonal and zeros are ignored).
 * pvg_fl_item_prior_from_titles builds one (own arrays: free with
 * pvg_fl_item_prior_free); a caller may also point the fields at its own. */
typedef struct pvg_fl_item_prior {
    uint32_t n_items;
    uint64_t *row_ptr; /* n_items + 1, row_ptr[0] = 0, non-decreasing */
    uint32_t *col;     /* row_ptr[n_items] entries, each < n_items */
    float *val;        /* row_ptr[n_items] entries */
} pvg_fl_item_prior;

/* The default number of neighbours an item keeps in
 * pvg_fl_item_prior_from_titles (docs/federated.md "A prior from public item
 * data": bench_fl_quality's figures with this many are no lower than with
 * every neighbour, on ML-100K and Online Retail at epsilon 8). */
#define PVG_FL_PRIOR_NEIGHBOURS 100

/* new: from the catalogue's public item titles (titles[i] item i's, NULL or
 * "" none: such an item gets no neighbours; titles NULL: none at all), each
 * item's top_l most similar other items by the squared cosine of their IDF
 * term vectors (the similarity of DP-EASE's text prior, src/model/content.c),
 * ties to the lower index, each row's columns ascending. Memory O(n_items
 * top_l) beyond the terms, never n_items^2. top_l 0: PVG_FL_PRIOR_NEIGHBOURS.
 * *n_linked (may be NULL) gets the number of items with a neighbour. Costs no
 * privacy budget: titles are the operator's catalogue, not shoppers' data.
 * Errors: PVG_ERR_INVALID (n_items 0), PVG_ERR_NOMEM; *out is zeroed on
 * error. */
pvg_status pvg_fl_item_prior_from_titles(const char *const *titles, uint32_t n_items,
                                         uint32_t top_l, pvg_fl_item_prior *out, size_t *n_linked,
                                         pvg_error *err) PVG_WARN_UNUSED;

/* Bounds on one item's labels in pvg_fl_item_prior_from_labels. */
#define PVG_FL_LABEL_MAX 256 /* bytes of one label, after trimming */
#define PVG_FL_LABELS_MAX 64 /* labels of one item */

/* new: from the catalogue's public category labels (docs/federated.md "A
 * prior from public item data"): labels[i] is item i's list of whole labels
 * separated by '|' or ',' (a shop's category line, "Kitchen|Knives|Gifts"),
 * each trimmed of spaces and tabs and compared with ASCII letters folded to
 * lower case, a label repeated in one item counted once; NULL, "" or only
 * spaces and tabs: no labels, no neighbours (labels NULL: none at all).
 * Items i and j are as similar as the squared cosine of their binary label
 * vectors, |L_i & L_j|^2 / (|L_i| |L_j|): every label weighs the same (no
 * IDF, and a label many items share still links them, unlike the titles'
 * function). Each item keeps its top_l most similar other items, ties to
 * the lower index, each row's columns ascending (top_l 0:
 * PVG_FL_PRIOR_NEIGHBOURS). Memory O(n_items top_l) beyond the labels; time
 * O(sum over labels of (items carrying it)^2). *n_linked (may be NULL) gets
 * the number of items with a neighbour. Costs no privacy budget: the labels
 * are the operator's catalogue. Errors: PVG_ERR_INVALID (n_items 0; a bad
 * list: err's line is the item's index + 1 and its offset the byte offset
 * in labels[i], the text names the item and what was expected: an empty
 * label between two separators or at either end, a control character other
 * than tab, a label over PVG_FL_LABEL_MAX bytes, more than
 * PVG_FL_LABELS_MAX labels), PVG_ERR_NOMEM; *out is zeroed on error. */
pvg_status pvg_fl_item_prior_from_labels(const char *const *labels, uint32_t n_items,
                                         uint32_t top_l, pvg_fl_item_prior *out, size_t *n_linked,
                                         pvg_error *err) PVG_WARN_UNUSED;

/* Frees the arrays of a prior from pvg_fl_item_prior_from_titles or _from_labels
 * and zeroes it; NULL is fine. */
void pvg_fl_item_prior_free(pvg_fl_item_prior *p);

/* Server only: a public item-item prior for the statistics form under DP
 * (docs/federated.md "A prior from public item data"). S (sparse, above,
 * S->n_items the model's) must come from public data alone, e.g. the
 * catalogue's titles (pvg_fl_item_prior_from_titles); it is copied as S~
 * (each row divided by max(1, its sum), the diagonal dropped). From then
 * on, in every round of the statistics form with DP, the noise ridge pulls
 * item j toward weight * sum_i S~_ji v*_i (its neighbours' fresh solves,
 * solved jointly) instead of toward 0: post-processing of the released sum,
 * no budget, nothing sent to clients. weight in [0, 1]. count_half h >= 0:
 * with h > 0 each neighbour i weighs S~_ji n_i / (n_i + h), n_i its released
 * noisy count (clamped at 0), each row rescaled to S~'s row total (0: S~
 * alone). S NULL removes the prior. Errors: PVG_ERR_INVALID (n_items not the
 * model's, weight or count_half out of range, a bad row_ptr (named by row),
 * a column out of range or repeated in its row, a negative or non-finite
 * value, named by entry index as the offset), PVG_ERR_NOMEM. */
pvg_status pvg_fl_model_set_item_prior(pvg_fl_model *m, const pvg_fl_item_prior *S, double weight,
                                       double count_half, pvg_error *err) PVG_WARN_UNUSED;

/* Versioned wire bytes of what every client of the round receives: config,
 * round number, item factors and the Gramian (little-endian, format in
 * docs/federated.md). new: *out (free with free()). */
pvg_status pvg_fl_model_broadcast(const pvg_fl_model *m, uint8_t **out, size_t *out_len,
                                  pvg_error *err) PVG_WARN_UNUSED;

/* Length d of the integer vector each client submits through SecAgg
 * (uint32 words, each holding a value mod 2^bits). 0 if out of range. */
size_t pvg_fl_update_dim(const pvg_fl_config *cfg, uint32_t n_items);

/* Client: parses the broadcast strictly, solves its own user factor,
 * computes its item update, clips, encodes (and, for DP_DISTRIBUTED, adds
 * its discrete Gaussian share) into vec[d] mod 2^bits. items[0..n) are the
 * shopper's distinct item indices (< n_items; duplicates are merged),
 * weights[0..n) their non-negative weights (NULL: all 1). rng: randomised
 * rounding and noise (the deterministic generator is refused for
 * DP_DISTRIBUTED unless cfg.allow_insecure_rng). user_factor (k floats)
 * may be NULL; it never leaves the client.
 * Errors: PVG_ERR_CORRUPT / PVG_ERR_UNSUPPORTED (broadcast, with byte
 * offset), PVG_ERR_INVALID (d mismatch, item out of range, bad weight),
 * PVG_ERR_POLICY, PVG_ERR_NOMEM. */
pvg_status pvg_fl_client_update(const uint8_t *broadcast, size_t len, const uint32_t *items,
                                const float *weights, size_t n, pvg_rng *rng, uint32_t *vec,
                                size_t d, float *user_factor, pvg_error *err) PVG_WARN_UNUSED;

/* As pvg_fl_client_update; allow_insecure_rng non-zero accepts the
 * deterministic test generator for the noise share (tests, simulations and
 * reproducible benchmarks only; privguide/rng.h). The broadcast cannot
 * grant this: its own flag is ignored. */
pvg_status pvg_fl_client_update_ex(const uint8_t *broadcast, size_t len, const uint32_t *items,
                                   const float *weights, size_t n, pvg_rng *rng,
                                   int allow_insecure_rng, uint32_t *vec, size_t d,
                                   float *user_factor, pvg_error *err) PVG_WARN_UNUSED;

/* Client or transport: parses a broadcast strictly (as pvg_fl_client_update
 * does) and returns its public config (granularity resolved,
 * allow_insecure_rng 0), round and catalog size, so that a client can check
 * the server's choices (DP mode, noise multiplier, clip, expected cohort)
 * against its own policy before it takes part: a malicious server could
 * otherwise ask for no noise. Errors as pvg_fl_client_update's parse. */
pvg_status pvg_fl_broadcast_info(const uint8_t *broadcast, size_t len, pvg_fl_config *cfg,
                                 uint32_t *round, uint32_t *n_items,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* Server: applies the unmasked SecAgg sum of `survivors` clients (central
 * DP noise added here when cfg.dp == PVG_FL_DP_CENTRAL), advances the round.
 * rng: central noise (deterministic generator refused unless
 * cfg.allow_insecure_rng); may be NULL otherwise. */
pvg_status pvg_fl_model_apply(pvg_fl_model *m, const uint32_t *sum, size_t d, uint32_t survivors,
                              pvg_rng *rng, pvg_error *err) PVG_WARN_UNUSED;

/* Client, on device: top-k items for its own history from a broadcast (no
 * server involved); the shopper's own items are excluded. out_items /
 * out_scores have room for k; *n_out gets the count (<= k). */
pvg_status pvg_fl_client_recommend(const uint8_t *broadcast, size_t len, const uint32_t *items,
                                   const float *weights, size_t n, size_t k, uint32_t *out_items,
                                   float *out_scores, size_t *n_out,
                                   pvg_error *err) PVG_WARN_UNUSED;

/* Accounting: the (epsilon, delta) of `rounds` rounds at Poisson sampling
 * rate q with cfg's noise (RDP of the subsampled Gaussian, improved
 * conversion). DP_NONE gives INFINITY. */
pvg_status pvg_fl_epsilon(const pvg_fl_config *cfg, double q, uint32_t rounds, double delta,
                          double *epsilon, pvg_error *err) PVG_WARN_UNUSED;

/* Item factors after training (n_items x k, row-major), borrowed from m,
 * for saving as a model / ranking. */
pvg_status pvg_fl_model_item_factors(const pvg_fl_model *m, const float **v, uint32_t *n_items,
                                     uint32_t *k, pvg_error *err) PVG_WARN_UNUSED;

/* The round the model is at (0 before the first apply). */
uint32_t pvg_fl_model_round(const pvg_fl_model *m);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
