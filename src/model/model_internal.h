/*
 * model_internal.h - internals shared by the files of src/model: the
 * dataset layout, sparse interaction matrices (CSR), the numeric kernels
 * with their naive reference versions, the in-memory model layout, and the
 * split functions of the evaluation harness. Tests include it directly.
 */
#ifndef PVG_MODEL_INTERNAL_H
#define PVG_MODEL_INTERNAL_H

#include <privguide/eval.h>
#include <privguide/model.h>

#include <stdatomic.h>
#include <stdint.h>

/* ---- dataset ---------------------------------------------------------- */

struct pvg_dataset {
    pvg_user_keying keying;
    pvg_event_weights w;
    unsigned char salt[16];
    /* users: keys[16*i] */
    size_t n_users, cap_users;
    unsigned char *user_keys;
    uint32_t *uhash; /* open addressing: user index + 1, 0 empty */
    size_t uhash_cap;
    /* items: external ids */
    size_t n_items, cap_items;
    char **item_ids;
    /* each item's title as the file's rows name it (Online Retail's
     * Description), NULL entries for none; NULL when the source carried
     * none (pvg_dataset_set_item_title). Read from events, so never a DP
     * trainer's public text by itself: a caller who holds the file as its
     * catalogue passes them as pvg_train_params.dp_item_titles */
    char **item_titles;
    size_t cap_titles;
    uint32_t *ihash;
    size_t ihash_cap;
    /* events, after weighting (one weighted contribution each) */
    size_t n_ev, cap_ev;
    uint32_t *ev_user, *ev_item;
    float *ev_w;
    int64_t *ev_ts;
    /* the store link (borrowed) when the dataset was read from a store
     * (pvg_dataset_load_store): models trained on it derive each shopper's
     * row key from the shopper's data key (the store must stay open until
     * the model is trained) and are saved with those rows sealed */
    pvg_store *store;
    /* search events without an item (docs/search.md, "Search events in
     * training"): the store's catalog index, built with the dataset when
     * search events weigh anything; NULL for a file dataset */
    struct pvg_search_index *search_ix;
    long long search_events; /* search events that gave the dataset an item */
};

/* Records title as item i's catalogue text unless it has one already (the
 * first non-empty title wins). -1 on NOMEM. */
int pvg_dataset_set_item_title(pvg_dataset *ds, size_t i, const char *title);
/* Item i's title from the file's rows (borrowed), or NULL. */
const char *pvg_dataset_item_title(const pvg_dataset *ds, size_t i);
/* Index of the item with external id `id`, or -1. */
long pvg_dataset_find_item(const pvg_dataset *ds, const char *id);

/* ---- content similarity (content.c) -------------------------------------- */

/* Item-item similarity from public catalogue text: S (n x n, row-major,
 * caller-allocated) gets the squared cosine of the items' IDF-weighted
 * term vectors (terms cut, folded, stop-worded and stemmed as the search
 * index does), 0 on the diagonal and for items without text. titles
 * (borrowed; NULL or NULL entries: no text); each title counts up to its
 * first 4096 bytes and 64 distinct terms, and a term in more than
 * max(64, a quarter) of the titled items weighs 0. *n_linked gets the
 * number of items similar to at least one other. Deterministic; costs no
 * privacy budget when the titles are the public catalogue's. */
pvg_status pvg_content_similarity(const char *const *titles, size_t n, float *S, size_t *n_linked,
                                  pvg_error *err) PVG_WARN_UNUSED;

/* pvg_content_similarity_rows's sink: row i of S, row[j] for the n_nz
 * columns nz[] (each > 0, unordered, never i); row[] is scratch, valid for
 * the call only. Non-OK stops the walk and is returned. */
typedef pvg_status (*pvg_content_row_fn)(void *ctx, size_t i, const float *row, const uint32_t *nz,
                                         size_t n_nz, pvg_error *err);

/* pvg_content_similarity one row at a time, in O(n) memory beyond the
 * terms: row_fn gets each row i = 0..n-1 in order with its nonzero entries
 * (the same values pvg_content_similarity writes). titles NULL: no call.
 * Errors: PVG_ERR_NOMEM, or row_fn's. */
pvg_status pvg_content_similarity_rows(const char *const *titles, size_t n,
                                       pvg_content_row_fn row_fn, void *ctx, size_t *n_linked,
                                       pvg_error *err) PVG_WARN_UNUSED;

/* The public basis DP-EASE projects its weighted Gram on (docs/models.md
 * "A prior from the catalogue's text"): V (n x k, row-major, columns
 * orthonormal, caller-allocated) gets the eigenvectors of the k largest
 * eigenvalues of K D K^T, K = I + alpha S~, S~ = S (n x n, as
 * pvg_content_similarity writes it) with each row divided by max(1, its
 * sum) (diagonal ignored), D = diag((pop_i + 1)^pop_pow), pop (n, >= 0) a
 * released popularity; largest first, each column's largest entry
 * positive. A function of the text and a release only (post-processing,
 * no budget); deterministic. Errors: PVG_ERR_INVALID (k not in 1..n,
 * alpha or pop_pow < 0, a negative or NaN pop, named by index), NOMEM,
 * INTERNAL (LAPACK). */
pvg_status pvg_content_gram_basis(const float *S, const float *pop, size_t n, size_t k,
                                  double alpha, double pop_pow, int threads, float *V,
                                  pvg_error *err) PVG_WARN_UNUSED;

/* ---- recency (recency.c; docs/models.md "Recency") ------------------------ */

/* The training's present: p->recency_now, or one second after ds's latest
 * event (0 for an empty dataset). */
int64_t pvg_recency_now(const pvg_dataset *ds, const pvg_train_params *p);
/* last[q] (R->nnz) for each cell q of R (shoppers x ds's items, each row's
 * columns ascending): the time of ds's latest event on that shopper and
 * item before now, INT64_MIN when none. Errors: PVG_ERR_INVALID when R is
 * larger than ds. */
struct pvg_csr;
pvg_status pvg_recency_last(const pvg_dataset *ds, const struct pvg_csr *R, int64_t now,
                            int64_t *last, pvg_error *err) PVG_WARN_UNUSED;
/* The bounds pvg_recency_check enforces: half-lives and windows in days,
 * the blend's weight, |recency_now| in seconds (the window's start stays
 * far inside int64) */
#define PVG_RECENCY_MAX_DAYS 1e6
#define PVG_RECENCY_MAX_BETA 1e6
#define PVG_RECENCY_MAX_NOW ((int64_t)1000000000000)
/* Validates p's recency parameters (all 0: off): EASE only
 * (PVG_ERR_UNSUPPORTED otherwise); recency_halflife_days, recent_pop_days
 * and recent_pop_beta 0 or finite in (0, max]; the window and its weight
 * together; recent_pop_share 0 or in (0, 1) (beside DP-EASE's Gram the
 * trainer refuses 0.5 and more) and only with the window;
 * recency_row_norm 0 or 1 and only with a half-life; recency_now only with
 * a term, within +-PVG_RECENCY_MAX_NOW. Errors: PVG_ERR_INVALID naming the
 * field and the value. */
pvg_status pvg_recency_check(const pvg_train_params *p, pvg_error *err) PVG_WARN_UNUSED;
/* t (Unix seconds) as YYYY-MM-DDTHH:MM:SSZ into buf (its decimal digits if
 * out of range); returns buf. */
const char *pvg_utc_text(int64_t t, char buf[32]);
/* pvg_recency_window_check over the events whose role[e] is
 * PVG_SPLIT_TRAIN (role NULL: all). */
pvg_status pvg_recency_window_check_role(const pvg_dataset *ds, const uint8_t *role,
                                         int64_t present, double days,
                                         pvg_error *err) PVG_WARN_UNUSED;
/* DP-EASE below this epsilon (with catalogue text) is the text-only model:
 * the popularity and the text, no Gram (docs/models.md "A prior from the
 * catalogue's text"). */
#define PVG_DP_EASE_TEXT_ONLY_EPS 5.0
/* Whether DP-EASE's trainer could have written m's recency record beside
 * its mechanism (a model file's reader; m->dp and m->params filled):
 * beside the Gram a recent_pop_share below 0.5, in the text-only model no
 * half-life, without catalogue text no terms at all. NULL when it could
 * (or m is not DP-EASE, or has no terms), else the refusal's text, starting
 * "recency record" and naming the field and what was expected. */
const char *pvg_dp_ease_recency_record_check(const pvg_model *m);
/* Sets every recency field of p to 0 (a model's record when the terms did
 * not apply). */
void pvg_model_recency_clear(pvg_train_params *p);
/* The Gram weight of a purchase at ts: 2^(-(now - ts) / half-life), 1 when
 * ts >= now or halflife_days <= 0, 0 for INT64_MIN (no purchase). */
float pvg_recency_weight(int64_t now, int64_t ts, double halflife_days);
/* rw[q] for each cell q of R: pvg_recency_weight of last[q], in [0, 1];
 * with row_norm (and halflife_days > 0) each row's weights scaled so their
 * L2 norm is sqrt(h), h the cells with a purchase (the binary row's): each
 * weight then in [0, sqrt(h)], finite whatever the ages (computed relative
 * to the row's latest purchase). */
void pvg_recency_row_weights(const struct pvg_csr *R, const int64_t *last, int64_t now,
                             double halflife_days, int row_norm, float *rw);
/* cnt[j] (R->n_cols) = the rows of R with a cell on j (positive weight)
 * whose last purchase (last, as pvg_recency_last) is in [now - days, now);
 * with unit, each such row counts 1/sqrt(k) instead of 1, k its cells in
 * the window (every row's contribution has L2 norm 1 or 0). */
pvg_status pvg_recent_buyers(const struct pvg_csr *R, const int64_t *last, int64_t now, double days,
                             int unit, double *cnt);
/* Every row i of B (n x n) gets beta * rms(B) * max(r_j, 0) / max r on
 * each j != i (rms over B's nonzero entries); nothing when beta, max r or
 * rms is 0. */
void pvg_recency_blend(float *B, size_t n, const float *r, double beta);
/* EASE in the primal form on the weighted Gram sum_u (r_u . x_u)(r_u .
 * x_u)^T, r_u = rw over R's cells (0: the cell is left out), x_u binary:
 * B (n x n) = -P_ij / P_jj, P = (G + lambda I)^-1, diagonal 0. Errors:
 * PVG_ERR_INVALID (lambda <= 0), NOMEM, INTERNAL (LAPACK). */
pvg_status pvg_ease_fit_weighted(const struct pvg_csr *R, const float *rw, size_t n, float lambda,
                                 int threads, float *B, pvg_error *err) PVG_WARN_UNUSED;

/* ---- sparse matrices ---------------------------------------------------- */

/* CSR: row r has columns indices[indptr[r] .. indptr[r+1]) (ascending) with
 * values data[...]. Shapes: indptr[n_rows+1], indices[nnz], data[nnz]. */
typedef struct pvg_csr {
    size_t n_rows, n_cols, nnz;
    uint64_t *indptr;
    uint32_t *indices;
    float *data;
} pvg_csr;

/* Aggregates n triplets (rows[i], cols[i], w[i]) where keep[i] != 0 (keep
 * NULL: all) into a CSR: duplicates summed, cells with sum <= 0 dropped. */
pvg_status pvg_csr_build(size_t n_rows, size_t n_cols, size_t n, const uint32_t *rows,
                         const uint32_t *cols, const float *w, const uint8_t *keep, pvg_csr *out);
/* out = transpose(a) (a CSC view of a as CSR of the transpose). */
pvg_status pvg_csr_transpose(const pvg_csr *a, pvg_csr *out);
void pvg_csr_free(pvg_csr *a);

/* ---- parallel helper ---------------------------------------------------- */

/* Runs fn(ctx, tid, begin, end) on n_threads threads over [0, n) split into
 * contiguous chunks of `grain` handed out dynamically. n_threads <= 1 runs
 * inline. Returns PVG_OK or PVG_ERR_INTERNAL if a thread cannot start. */
typedef void (*pvg_range_fn)(void *ctx, int tid, size_t begin, size_t end);
pvg_status pvg_parallel_for(int n_threads, size_t n, size_t grain, pvg_range_fn fn, void *ctx);

/* OpenBLAS's thread count is one process-wide setting, and changing it
 * while another thread is inside BLAS is a race. It therefore stays 1 (our
 * own threads give the parallelism) except inside a threaded section, which
 * excludes every other BLAS user of the process: pvg_parallel_for and
 * pvg_matvec hold the shared side, so concurrent trainings and scoring never
 * see it toggled under them. A threaded section must not be entered from
 * inside a parallel section (asserted). */
void pvg_blas_threaded_begin(int n);
void pvg_blas_threaded_end(void);
void pvg_blas_shared_begin(void);
void pvg_blas_shared_end(void);

double pvg_now_seconds(void);
/* Process CPU time (all threads), seconds. */
double pvg_cpu_seconds(void);
long pvg_peak_rss_kb(void);

/* ---- kernels (each with its naive reference) ---------------------------- */

/* Top-k of scores[n] (entries equal to -INFINITY are skipped), best first;
 * ties broken by lower index. idx_out[k], score_out[k]; returns the count. */
size_t pvg_topk(const float *scores, size_t n, size_t k, int64_t *idx_out, float *score_out);
size_t pvg_topk_naive(const float *scores, size_t n, size_t k, int64_t *idx_out, float *score_out);

/* G[f x f] = V^T V for V[n x f] (row-major). Fast: cblas_ssyrk. */
void pvg_gramian(const float *V, size_t n, size_t f, float *G);
void pvg_gramian_naive(const float *V, size_t n, size_t f, float *G);

/* scores[n] = V[n x f] * u[f]. */
void pvg_matvec(const float *V, size_t n, size_t f, const float *u, float *scores);
void pvg_matvec_naive(const float *V, size_t n, size_t f, const float *u, float *scores);

/* IEEE half precision conversions (round to nearest even; overflow to inf). */
uint16_t pvg_f32_to_f16(float x);
float pvg_f16_to_f32(uint16_t h);
/* Packs V[n x f] into half precision blocks of 8 items: out[(b*f + k)*8 + j]
 * = V[(8b + j) x f + k] (zero padding past n). out has ceil(n/8)*8*f. */
void pvg_f16_pack(const float *V, size_t n, size_t f, uint16_t *out);
/* scores[n] = V u from the packed half-precision blocks. Fast: F16C + FMA
 * when the CPU has them (8 items per vector, no horizontal sums). */
void pvg_matvec_f16(const uint16_t *Vp, size_t n, size_t f, const float *u, float *scores);
void pvg_matvec_f16_naive(const uint16_t *Vp, size_t n, size_t f, const float *u, float *scores);

/* The iALS normal-equation operator for a block of rows:
 *   A_r = alpha0 * G + reg_r * I + sum_{j in row r} c_rj h_j h_j^T
 * with c_rj = 1 + conf * log1p(w_rj), right-hand side b_r = sum_j c_rj h_j.
 * ials_apply computes Y[b x f] = A_r X_r for the rows [r0, r0+b) of M.
 * Shapes: G[f x f], H[n_cols x f], X,Y[b x f], reg[b]. */
void pvg_ials_apply(const pvg_csr *M, size_t r0, size_t b, const float *H, const float *G, size_t f,
                    float alpha0, const float *reg, float conf, const float *X, float *Y);
/* pvg_ials_apply without the AVX2 path (so tests cover both). */
void pvg_ials_apply_portable(const pvg_csr *M, size_t r0, size_t b, const float *H, const float *G,
                             size_t f, float alpha0, const float *reg, float conf, const float *X,
                             float *Y);
void pvg_ials_apply_naive(const pvg_csr *M, size_t r0, size_t b, const float *H, const float *G,
                          size_t f, float alpha0, const float *reg, float conf, const float *X,
                          float *Y);
/* Solves the rows [r0, r0+b) in place in W (warm start): cg_steps > 0 runs
 * that many conjugate-gradient steps, 0 solves exactly by Cholesky.
 * scratch: 5*b*f + f*f floats. */
void pvg_ials_solve_block(const pvg_csr *M, size_t r0, size_t b, const float *H, const float *G,
                          size_t f, float alpha0, const float *reg, float conf, int cg_steps,
                          float *W, float *scratch);
/* Exact solve of one row by a dense Cholesky (reference for the above). */
int pvg_ials_solve_row_exact(const pvg_csr *M, size_t r, const float *H, const float *G, size_t f,
                             float alpha0, float reg, float conf, float *w_out);
/* Solves A x = b in double by a dense Cholesky factorisation. A[f x f]
 * (row-major, symmetric): only its lower triangle is read, and that triangle
 * is overwritten by the factor L (A = L L^T); the upper one is left as is.
 * x[f] holds b on entry and the solution on return. Returns 0, or -1 when A
 * is not positive definite (a pivot is not > 0, NaN included), x then as
 * on entry. */
int pvg_cholesky_solve(double *A, size_t f, double *x);
/* The two halves of pvg_cholesky_solve, for one factor and many right-hand
 * sides: pvg_cholesky_factor overwrites A's lower triangle by L (A = L L^T;
 * 0, or -1 when A is not positive definite, A's lower triangle then partly
 * overwritten); pvg_cholesky_solve_factored solves L L^T x = b in place (x[f]
 * holds b on entry), reading only L's lower triangle. */
int pvg_cholesky_factor(double *A, size_t f);
void pvg_cholesky_solve_factored(const double *L, size_t f, double *x);

/* Cosine item-item similarity with shrinkage from the item-user matrix C
 * (rows = items) and the user-item matrix R:
 *   sim(i,j) = <x_i,x_j> / (|x_i| |x_j| + shrink), j != i
 * Fast: sparse accumulation per item, keeps the top `nbrs` per item as a
 * CSR S (n_items rows). Naive: dense n x n (tests only). */
pvg_status pvg_knn_build(const pvg_csr *R, const pvg_csr *C, int nbrs, float shrink, int threads,
                         pvg_csr *S);
void pvg_knn_dense_naive(const pvg_csr *R, size_t n_items, float shrink, float *Sd);

/* EASE: B = I - P diagMat(1 / diag(P)), P = (X^T X + lambda I)^-1, diag(B)
 * = 0, X binary. Fast: sparse Gram + LAPACKE spotrf/spotri. Naive:
 * Gauss-Jordan in double (tests). B[n x n] row-major. */
pvg_status pvg_ease_fit(const pvg_csr *R, const pvg_csr *C, size_t n_items, float lambda,
                        int threads, float *B, pvg_error *err);

/* The form EASE is solved in (docs/models.md, "EASE in the dual form"):
 * primal inverts the m x m item Gram X^T X + lambda I; dual (Woodbury)
 * inverts the n x n user Gram X X^T + lambda I and forms
 * B_ij = M_ij / (1 - M_jj), M = X^T (X X^T + lambda I)^-1 X. Both run over
 * the items with interactions (and the users with any) only; the other
 * rows and columns of B are 0. AUTO: dual when users < items. */
typedef enum pvg_ease_form {
    PVG_EASE_AUTO = 0,
    PVG_EASE_PRIMAL = 1,
    PVG_EASE_DUAL = 2
} pvg_ease_form;

typedef struct pvg_ease_plan {
    size_t users, items; /* with interactions */
    pvg_ease_form form;  /* the one AUTO picks */
    double bytes;        /* peak memory estimate of the fit, B included */
} pvg_ease_plan;

void pvg_ease_plan_of(const pvg_csr *R, pvg_ease_form form, pvg_ease_plan *plan);
pvg_status pvg_ease_fit_form(const pvg_csr *R, const pvg_csr *C, size_t n_items, float lambda,
                             int threads, pvg_ease_form form, float *B, pvg_error *err);
/* acc[0:t] += sum over rows[0:n] of B[row, j0:j0+t] (B row-major with
 * ni columns), rows added in order (the same sums as one at a time). */
void pvg_ease_tile_add(float *restrict acc, const float *restrict B, size_t ni,
                       const uint32_t *rows, size_t n, size_t j0, size_t t);
pvg_status pvg_ease_primal(const pvg_csr *R, const pvg_csr *C, size_t n, float lambda, int threads,
                           float *B, pvg_error *err);
void pvg_ease_fit_naive(const pvg_csr *R, size_t n_items, double lambda, float *B);

/* ---- model --------------------------------------------------------------- */

enum {
    PVG_SEC_USER_KEYS = 1, /* n_users * 16 bytes, sorted */
    PVG_SEC_USER_ORDER,    /* uint32[n_users]: user index of each sorted key */
    PVG_SEC_HIST_INDPTR,   /* uint64[n_users+1] */
    PVG_SEC_HIST_ITEMS,    /* uint32[nnz] */
    PVG_SEC_HIST_W,        /* float[nnz] */
    PVG_SEC_ITEM_OFF,      /* uint64[n_items+1] offsets into ITEM_STR */
    PVG_SEC_ITEM_STR,      /* NUL-terminated ids */
    PVG_SEC_ITEM_ORDER,    /* uint32[n_items]: items sorted by id */
    PVG_SEC_POPULARITY,    /* float[n_items]: distinct users */
    PVG_SEC_USER_F,        /* float[n_users * f] */
    PVG_SEC_ITEM_F,        /* float[n_items * f] */
    PVG_SEC_GRAM,          /* float[f * f] item Gramian (fold-in) */
    PVG_SEC_EASE_B,        /* float[n_items * n_items] */
    PVG_SEC_KNN_INDPTR,    /* uint64[n_items+1] */
    PVG_SEC_KNN_IDX,       /* uint32[nnz] */
    PVG_SEC_KNN_SIM,       /* float[nnz] */
    PVG_SEC_ITEM_F16,      /* uint16[ceil(n_items/8) * f * 8]: half-precision item
                              factors for serving, blocks of 8 items, [block][k][8] */
    PVG_SEC_COUNT
};

/* What a DP trainer proved about its run (all zero: not DP). Filled by the
 * trainer, kept in struct pvg_model and its file's header. */
typedef struct pvg_dp_report {
    double epsilon, delta;   /* the guarantee the run's accountant proves */
    double noise_multiplier; /* noise std / sensitivity actually used */
    double sensitivity;      /* the sensitivity the noise was calibrated to */
    int max_items;           /* contribution bound m (items kept per shopper) */
    double clip;             /* other clipping bound of the method (0: none) */
    const char *mechanism;   /* static name, e.g. "dp-ease/gaussian-gram" */
} pvg_dp_report;

struct pvg_model {
    pvg_model_type type;
    pvg_user_keying keying;
    unsigned char salt[16];
    unsigned char fingerprint[32];
    uint64_t n_users, n_items, factors, hist_nnz, knn_nnz, item_str_len;
    pvg_train_params params;            /* callbacks cleared */
    pvg_dp_report dp;                   /* the DP guarantee of its training (zero: not DP) */
    pvg_dp_vocabulary dp_vocab;         /* how a DP model's items were chosen */
    char dp_mech[PVG_DP_MECHANISM_MAX]; /* dp.mechanism of a loaded file points here */
    int rec_present_data; /* the recency terms' present was read from the data (one second
                             after the latest event): used, never recorded (params.recency_now
                             0, the header's flag) */
    const void *sec[PVG_SEC_COUNT];
    uint64_t sec_len[PVG_SEC_COUNT];
    /* typed views of sec[] */
    const unsigned char *user_keys;
    const uint32_t *user_order, *hist_items, *item_order, *knn_idx;
    const uint64_t *hist_indptr, *item_off, *knn_indptr;
    const char *item_str;
    const float *hist_w, *popularity, *U, *V, *gram, *ease_B, *knn_sim;
    const uint16_t *V16;
    /* storage: either one mapping or owned buffers */
    void *map;
    size_t map_len;
    void *owned[PVG_SEC_COUNT];
    /* per-shopper sealing (model_file.c). A store-linked model (trained
     * from the store, or a loaded file whose rows were opened with it)
     * has row_keys: 32 bytes per user index (sodium_malloc'd), row_ok[u]
     * = 1 when user u has a key (0: erased before training finished; that
     * user's rows are never written); seal_id names the model's row keys
     * (random at training, kept by erasure rewrites); dir_key hides the
     * pseudonyms of the file's rows directory; data_dir: the store's
     * directory, the only place its files may be saved (pvg_model_save). */
    unsigned char seal_id[16];
    unsigned char *dir_key; /* the store's directory key (sodium_malloc'd, 32 bytes) */
    unsigned char *row_keys;
    unsigned char *row_ok;
    char *data_dir;
    /* a loaded file whose rows are sealed: the rows region (directory then
     * rows, in the mapping) and the counts the file holds; users_locked
     * until pvg_model_unseal opens the rows whose keys the store still has
     * into users_mem (sodium_malloc'd); shredded: rows it could not open */
    int sealed_file;
    int users_locked;
    const unsigned char *sealed;
    uint64_t sealed_off, sealed_len;
    uint64_t file_users, file_hist_nnz;
    uint64_t shredded;
    void *users_mem;
    size_t users_mem_len;
    char *path; /* of a loaded file, for messages */
    /* serving state (serve_batch.c): int8 item factors and the combining
     * queue, made on first use (pvg_model_serve), freed with the model */
    struct pvg_serve *_Atomic serve;
    int no_fast_serve; /* 1: score every item in float/f16 (reference; tests, bench) */
    /* the serving state's approximate index (serve_index.c): 0 auto (from
     * PVG_IVF_MIN_ITEMS items), 1 never, 2 always; read when the state is
     * made. serve_nprobe: lists probed (0: pvg_ivf_default_nprobe) */
    int serve_index;
    size_t serve_nprobe;
};

/* 1 for the sections that hold per-shopper data (user keys and order,
 * histories, user factors): sealed in files of store-trained models. */
int pvg_model_section_is_user(int sec);

/* Builds the serving parts common to every model (users, histories, item
 * ids, popularity) from a dataset and its training matrix. Takes ownership
 * of nothing; copies. */
pvg_status pvg_model_new_common(const pvg_dataset *ds, const pvg_csr *R, const pvg_train_params *p,
                                pvg_model **out, pvg_error *err);
/* Hands an owned buffer to the model as section `sec` (steals buf). */
void pvg_model_set_section(pvg_model *m, int sec, void *buf, uint64_t len);
/* Re-derives the typed views from sec[]. */
void pvg_model_bind(pvg_model *m);
/* The iALS unobserved weight for a training matrix of these shapes:
 * p->alpha0 when >= 0, else p->alpha * nnz / (n_users n_items). */
double pvg_ials_alpha0_of(const pvg_train_params *p, size_t n_users, size_t n_items, size_t nnz);
/* iALS's data-derived defaults (factor.c; docs/models.md "Defaults that
 * travel"): with g = pvg_ials_effective_degree(R), reg < 0 becomes
 * PVG_IALS_REG_SCALE / g, and alpha < 0 (when alpha0 < 0 too) becomes
 * g / PVG_IALS_ALPHA_DEGREE clamped to [1, 3]. Values >= 0 stay. Never for
 * DP training (the degrees are private): pvg_ials_fixed_defaults there. */
#define PVG_IALS_REG_SCALE 1.0
#define PVG_IALS_ALPHA_DEGREE 15.0
void pvg_ials_resolve_defaults(pvg_train_params *p, const pvg_csr *R);
/* sqrt(mean user degree x mean item degree) over the rows and columns of R
 * with at least one entry = nnz / sqrt(active users x active items); 0 when
 * R is empty. */
double pvg_ials_effective_degree(const pvg_csr *R);

/* Row of the user with this model key, or -1 (also while the rows are
 * sealed). */
int64_t pvg_model_find_user(const pvg_model *m, const unsigned char key[16]);

/* Scores every item for a user history into scores[n_items] (no
 * exclusion). u_factors may be NULL for a fold-in; scratch f*f + 2f floats. */
void pvg_model_score(const pvg_model *m, const float *u_factors, const uint32_t *items,
                     const float *w, size_t n, float *scores, float *scratch);
/* Fold-in of a history into u[f] (iALS closed form; BPR the same ridge
 * projection). */
void pvg_model_fold_in(const pvg_model *m, const uint32_t *items, const float *w, size_t n,
                       float *u, float *scratch);

/* ---- fast serving of factor models (serve_batch.c) ------------------------ */

/* Item factors in int8 with a per-item scale, for AVX-512 VNNI: blocks of
 * PVG_I8_BLOCK items, q[((b * f4) + c) * 64 + l * 4 + r] = item 16b+l,
 * factor 4c+r (zero past f and n). corr[i] = 128 * sum of item i's q (the
 * shopper's factors enter as q + 128, unsigned). */
#define PVG_I8_BLOCK 16
typedef struct pvg_i8_items {
    size_t n, n_pad, f, f4;
    int8_t *q;
    float *scale;
    int32_t *corr;
    /* bound[p] = scale * |q_p| (rounded up): the int8 score of position p
     * for a shopper is at most bound[p] * pvg_i8_user_bound(...) in size */
    float *bound;
    uint32_t *item; /* [n]: the row of V at each position (NULL: position = row) */
    int sorted;     /* 1: bound[] does not increase with the position */
} pvg_i8_items;
/* Items of V[n x f], positions in descending order of bound (ties: lower
 * row first; Q->item maps back, Q->sorted set). 0, or -1 out of memory (Q
 * left empty). */
int pvg_i8_items_build(const float *V, size_t n, size_t f, pvg_i8_items *Q);
/* Position i of Q holding row rows[i] of V (UINT32_MAX: a zero row, scale
 * 0); rows NULL: row i. Q->item stays NULL (the caller keeps its map) and
 * Q->sorted 0. */
int pvg_i8_items_build_rows(const float *V, const uint32_t *rows, size_t n, size_t f,
                            pvg_i8_items *Q);
void pvg_i8_items_free(pvg_i8_items *Q);
/* A shopper's factors u[f] as uq[f4 * 4] (q + 128); returns the scale. */
float pvg_i8_user(const float *u, size_t f, size_t f4, uint8_t *uq);
/* us * |uq - 128| (rounded up): with Q->bound[p], a bound on the size of
 * every int8 score of position p for this shopper. */
double pvg_i8_user_bound(const uint8_t *uq, size_t f4, float us);
/* Approximate scores of items [j0, j0 + t) (j0, t multiples of 16, within
 * n_pad) for nu shoppers (uq[a * f4 * 4], scale us[a]):
 * out[a * ld + j - j0] = (uq_a . q_j - corr_j) * (scale_j * us_a). Fast:
 * AVX-512 VNNI (up to 8 shoppers per block of items); the portable and
 * naive versions give the same floats bit for bit. */
void pvg_i8_scores(const pvg_i8_items *Q, const uint8_t *uq, const float *us, size_t nu, size_t j0,
                   size_t t, float *out, size_t ld);
void pvg_i8_scores_portable(const pvg_i8_items *Q, const uint8_t *uq, const float *us, size_t nu,
                            size_t j0, size_t t, float *out, size_t ld);
void pvg_i8_scores_naive(const pvg_i8_items *Q, const uint8_t *uq, const float *us, size_t nu,
                         size_t j0, size_t t, float *out, size_t ld);

/* The best `cap` (score, index) pairs seen (pvg_topk's order: higher score,
 * then lower index; indices distinct, below 2^32; -0 reported as +0; -inf
 * and NaN skipped, and the
 * indices in the exclusion list): offers at or above thr are appended to a
 * buffer of room entries, compacted to the best cap (excluded ones
 * dropped) when it fills; thr is then the worst kept (-inf before; +inf
 * when cap is 0): nothing below it can enter. pvg_topc_finish, once after
 * the last offer, leaves the best min(cap, offered) in idx/sc[0..n), in no
 * order. scan offers
 * s[0..t) as indices base.. and touches only entries >= thr (AVX-512
 * compare masks when the CPU has them). */
typedef struct pvg_topc {
    size_t cap, room, n, chk; /* room: buffer entries; chk: entries checked against ex */
    int64_t *idx;
    float *sc, thr;
    const uint32_t *ex; /* borrowed, ascending: indices never kept */
    size_t n_ex;
    uint64_t exf[8]; /* a bit per hash of each index in ex: most kept indices
                        are told apart from ex without a search */
} pvg_topc;
/* Entries of idx and sc a pvg_topc of cap needs. */
size_t pvg_topc_room(size_t cap);
/* idx, sc: pvg_topc_room(cap) entries each, borrowed. */
void pvg_topc_init(pvg_topc *h, size_t cap, int64_t *idx, float *sc);
void pvg_topc_finish(pvg_topc *h);
/* Sets h's exclusion list (ascending, borrowed for h's life). */
void pvg_topc_exclude(pvg_topc *h, const uint32_t *ex, size_t n_ex);
void pvg_topc_scan(pvg_topc *h, const float *s, size_t t, int64_t base);
void pvg_topc_scan_portable(pvg_topc *h, const float *s, size_t t, int64_t base);

/* The fused scan: the int8 scores (pvg_i8_scores' floats) of positions
 * [p0, p1) (p0 a multiple of 16, p1 <= n_pad) for nu shoppers (uq[a * f4 *
 * 4], us[a]), each offered to *h[a] as index ids[p] (ids NULL: p), block by
 * block in registers: only a block holding a score >= a shopper's
 * threshold reaches its heap. Leaves every heap as pvg_i8_scan_naive does
 * (scores into a tile, then each offered in turn). Fast: AVX-512 VNNI,
 * up to 16 shoppers per pass over a block. */
void pvg_i8_scan(const pvg_i8_items *Q, const uint8_t *uq, const float *us, size_t nu, size_t p0,
                 size_t p1, const uint32_t *ids, pvg_topc *const *h);
void pvg_i8_scan_portable(const pvg_i8_items *Q, const uint8_t *uq, const float *us, size_t nu,
                          size_t p0, size_t p1, const uint32_t *ids, pvg_topc *const *h);
void pvg_i8_scan_naive(const pvg_i8_items *Q, const uint8_t *uq, const float *us, size_t nu,
                       size_t p0, size_t p1, const uint32_t *ids, pvg_topc *const *h);

/* One shopper's request: factors u[f] (borrowed), items never to return
 * (borrowed, any order), k; the answer in idx[k], sc[k] (exact float
 * scores, best first), n_out. */
typedef struct pvg_serve_job {
    const float *u;
    const uint32_t *excl;
    size_t n_excl, k;
    int64_t *idx;
    float *sc;
    size_t n_out;
    int done, failed;
    struct pvg_serve_job *next;
} pvg_serve_job;
/* Candidates kept per shopper from the int8 scores for the exact re-rank
 * (2k + 32, saturating); pvg_serve_job_cap: that, at most n (the items). */
size_t pvg_serve_candidates(size_t k);
size_t pvg_serve_job_cap(size_t k, size_t n);
/* Scores nj jobs as one batch: the fused int8 scan (pvg_i8_scan), the top
 * pvg_serve_candidates(k) of each, re-ranked exactly with V; on a sorted Q
 * a shopper's scan stops where the bound of the remaining items falls
 * below its threshold (the same candidates). 0, or -1 out of memory (no
 * job answered). */
int pvg_serve_score(const pvg_i8_items *Q, const float *V, const pvg_serve_job *const *jobs,
                    size_t nj);

/* The exact float re-rank of the candidates h (item indices of V, after
 * pvg_topc_finish) into j's answer (best k, NaN and -inf scores skipped); scratch of
 * pvg_serve_rerank_scratch(h->n) bytes. */
size_t pvg_serve_rerank_scratch(size_t n);
void pvg_serve_rerank(const float *V, size_t f, const pvg_topc *h, pvg_serve_job *j, void *scratch);

/* ---- approximate index for large catalogues (serve_index.c) ---------------- */

/* An inverted-file index for maximum inner product (docs/scale.md,
 * "Approximate index"): k-means (deterministic seeding from the item count,
 * no random source) over the item factors augmented to equal norm
 * (x' = [x, sqrt(M^2 - |x|^2)] / M, M the largest item norm), so that the
 * lists nearest a shopper's direction are the lists of the highest inner
 * products; each list's items stored contiguously in int8 (q, positions
 * padded to blocks of 16). Items whose factors are not finite sit in one
 * extra list every shopper probes (the int8 scan scores them 0, as the
 * exact path does). */
typedef struct pvg_ivf {
    size_t n, f, nlist;
    float *cent_t;   /* [f][nlist]: list centroids (scaled item part), transposed */
    float *bias;     /* [nlist]: -|c'|^2 / 2 of each augmented centroid */
    uint64_t *start; /* [nlist + 2]: first position of each list (multiples of 16);
                        list nlist holds the non-finite items */
    uint64_t *count; /* [nlist + 1]: items in each list */
    uint32_t *item;  /* [q.n]: the item at each position (UINT32_MAX: padding) */
    uint32_t *pos;   /* [n]: the position of each item */
    pvg_i8_items q;  /* int8 factors by position */
    double reach;    /* the measured default probing: every list whose score lies
                        within reach x (best - mean list score) of the shopper's
                        best (serve_index.c, reach_of) */
    size_t nprobe;   /* the mean lists that reach probes (pvg_ivf_default_nprobe) */
    double build_seconds, build_cpu_seconds; /* wall and process CPU time of the build */
} pvg_ivf;
/* Catalogues of at least this many items are served through the index
 * (below it the exact int8 scan is as fast; docs/scale.md). */
#define PVG_IVF_MIN_ITEMS 50000
/* ... unless its measured nprobe covers more than this share of the lists
 * (then the exact scan is as fast and serves instead). */
#define PVG_IVF_MAX_SHARE 0.2
/* Builds the index of V[n x f] with nlist lists (0: the default for n) and
 * measures its default probing: the least reach (how far below a shopper's
 * best list score, in units of its best less its mean list score) whose
 * lists hold PVG_IVF_CALIB_RECALL of the exact top-10 items of up to
 * PVG_IVF_CALIB_QUERIES calibration queries, evenly spaced among Uq[nq x f]
 * (the model's shopper factors; NULL: its item factors), query r excluding
 * ex_items[ex_ptr[r] .. ex_ptr[r+1]) when ex_ptr (their seen items, as
 * serving excludes them). 0, or -1 out of memory (ix left empty).
 * Deterministic: the same inputs give the same index on the same machine. */
#define PVG_IVF_CALIB_RECALL 0.997
#define PVG_IVF_CALIB_QUERIES 1024
int pvg_ivf_build(const float *V, size_t n, size_t f, size_t nlist, const float *Uq, size_t nq,
                  const uint64_t *ex_ptr, const uint32_t *ex_items, pvg_ivf *ix);
void pvg_ivf_free(pvg_ivf *ix);
size_t pvg_ivf_default_nlist(size_t n);
/* The mean lists probed per shopper when the caller does not choose (the
 * default probes by reach: recall@10 >= 0.99 against exact on the bench's
 * catalogues; docs/models.md), measured on the calibration queries. */
size_t pvg_ivf_default_nprobe(const pvg_ivf *ix);
/* Bytes the index holds. */
size_t pvg_ivf_bytes(const pvg_ivf *ix);
/* pvg_serve_score through the index: for each job the nprobe lists whose
 * centroids score highest for its factors (nprobe 0: the default, every
 * list scoring within the measured reach of the job's best list, at most
 * 4 x pvg_ivf_default_nprobe, and more of the best lists when those hold
 * fewer than pvg_serve_job_cap(k) items the job does not exclude), the
 * int8 scores
 * of their items (excluded items never kept), the best
 * pvg_serve_candidates(k) re-ranked exactly with V. Each job's answer does
 * not depend on the others in the batch. 0, or -1 out of memory. */
int pvg_ivf_score(const pvg_ivf *ix, const float *V, size_t nprobe,
                  const pvg_serve_job *const *jobs, size_t nj);
/* The lists pvg_ivf_score probes for a shopper's factors u[f] with nprobe
 * (0: the default, by the measured reach, as for k = 10 and no excluded
 * items): how many, and the items they
 * hold in *items (items not NULL; the non-finite list, always scanned, not
 * counted). For benches and tests. 0 out of memory. */
size_t pvg_ivf_probes(const pvg_ivf *ix, const float *u, size_t nprobe, size_t *items);
/* A shopper's list scores out[nlist] (pvg_ivf_score's first step): vec 1
 * the AVX-512 loop where the CPU has it, 0 the portable loop; the same
 * floats either way. For tests. */
void pvg_ivf_list_scores(const pvg_ivf *ix, const float *u, float *out, int vec);

typedef struct pvg_serve pvg_serve;
/* The model's serving state, made on first use (NULL: not a factor model,
 * or out of memory: the caller scores the plain way). Borrowed; lives as
 * long as the model. */
pvg_serve *pvg_model_serve(const pvg_model *m);
void pvg_serve_free(pvg_serve *s);
/* Runs one job, combined with the requests of other threads queued at the
 * same time (never waits when a scoring slot is free). 0, or -1. */
int pvg_serve_run(pvg_serve *s, pvg_serve_job *job);
/* Runs n jobs submitted together: queued at once, so they are scored in
 * batches of up to 32 (with other threads' jobs of the same moment) rather
 * than one by one. Each job's answer does not depend on the others; a job
 * whose batch could not be scored (out of memory) has failed = 1. 0 when
 * every job was scored, else -1. */
int pvg_serve_run_many(pvg_serve *s, pvg_serve_job *const *jobs, size_t n);
/* Top-k of n shoppers (16-byte model keys) into out[i*k ..], n_out[i],
 * sts[i] (PVG_OK, or PVG_ERR_NOT_FOUND when the model does not know the
 * shopper): as pvg_model_recommend for each, but the factor models' fast
 * path submits them to the serving queue together (pvg_serve_run_many), so
 * they are scored as one batch. Each shopper's answer does not depend on
 * the others. Errors: sealed shoppers' sections (PVG_ERR_STATE, every
 * sts[i] NOT_FOUND), out of memory (the shoppers not answered get it). */
pvg_status pvg_model_recommend_many(const pvg_model *m, const unsigned char *user_keys, size_t n,
                                    size_t k, int include_seen, pvg_scored_item *out, size_t *n_out,
                                    pvg_status *sts, pvg_error *err);
/* 1 when s serves through the approximate index (pvg_ivf). */
int pvg_serve_uses_index(const pvg_serve *s);
/* The lists the index probes from now on (0: its default); no effect on
 * the exact scan. */
void pvg_serve_set_nprobe(pvg_serve *s, size_t nprobe);
/* The lists the index probes per shopper now (0: s scans every item). */
size_t pvg_serve_nprobe(const pvg_serve *s);
/* Batches scored so far, jobs in them and the largest batch. */
void pvg_serve_stats(const pvg_model *m, long long *batches, long long *jobs, long long *max_batch);

/* ---- training entry points ------------------------------------------------ */
pvg_status pvg_train_ials(const pvg_csr *R, const pvg_csr *C, const pvg_train_params *p,
                          float **U_out, float **V_out, pvg_train_stats *st, pvg_error *err);
pvg_status pvg_train_bpr(const pvg_csr *R, const pvg_train_params *p, float **U_out, float **V_out,
                         pvg_train_stats *st, pvg_error *err);

/* DP-iALS (dp_ials.c; docs/models.md "DP-iALS"): iALS with (epsilon,
 * delta)-DP at the shopper level for the item factors V (the published
 * artefact); U is each shopper's own solve (joint DP). Contribution bound:
 * p->dp_max_items items per shopper (0: PVG_DP_IALS_DEFAULT_M) kept
 * uniformly at random from rng, binary; user factors enter the item
 * statistics at unit norm. p->epochs noisy item updates, accounted with
 * RDP; the noise meets (p->dp_epsilon, p->dp_delta), or is
 * p->dp_noise_multiplier when > 0 (rep then holds the resulting epsilon).
 * rng borrowed (NULL: a new CSPRNG); the deterministic generator is refused
 * unless p->dp_allow_insecure_rng. p->alpha0 must be resolved (>= 0; see
 * pvg_dp_ials_alpha0). C is unused (the item side runs over the clipped
 * matrix). *U, *V new; rep filled on success. */
#define PVG_DP_IALS_DEFAULT_M 128
pvg_status pvg_train_dp_ials(const pvg_csr *R, const pvg_csr *C, const pvg_train_params *p,
                             pvg_rng *rng, float **U, float **V, pvg_dp_report *rep,
                             pvg_train_stats *stats, pvg_error *err) PVG_WARN_UNUSED;
/* The method's fixed choices (tests and experiments vary them): the share
 * of each iteration's privacy (1/z^2) given to the noisy A_j, b_j and G
 * (shares sum to 1; share_A 0: A_j is not released and the item solve
 * uses alpha0 G~ + reg I only), the positive-definiteness shift in units of
 * the noise's spectral norm 2 sqrt(f) sigma, and the strength of the
 * James-Stein shrinkage of each item (0: none). */
typedef struct pvg_dp_ials_knobs {
    double share_A, share_b, share_G;
    double shift, js;
} pvg_dp_ials_knobs;
void pvg_dp_ials_knobs_default(pvg_dp_ials_knobs *k);
/* pvg_train_dp_ials with knobs k (NULL: the defaults). */
pvg_status pvg_train_dp_ials_knobs(const pvg_csr *R, const pvg_csr *C, const pvg_train_params *p,
                                   const pvg_dp_ials_knobs *k, pvg_rng *rng, float **U, float **V,
                                   pvg_dp_report *rep, pvg_train_stats *stats,
                                   pvg_error *err) PVG_WARN_UNUSED;
/* The unobserved weight DP-iALS uses: p->alpha0 when >= 0, else alpha * m /
 * |I| (the contribution bound m stands in for the mean history length,
 * which is data; |I| is the public catalogue). */
double pvg_dp_ials_alpha0(const pvg_train_params *p, size_t n_items);
/* epsilon at delta of `iterations` Gaussian releases of noise multiplier z
 * (RDP, default orders, improved conversion): DP-iALS's accountant. */
double pvg_dp_ials_epsilon(double z, int iterations, double delta);
/* The contribution bound alone (for tests): out = R with every row of more
 * than m items cut to a uniformly random m-subset, all weights 1. */
pvg_status pvg_dp_ials_clip(const pvg_csr *R, int m, pvg_rng *rng, pvg_csr *out);
/* Ub[n x f] = the rows of U scaled to unit norm (zero rows stay zero). */
void pvg_dp_ials_unit_rows(const float *U, size_t n, size_t f, double *Ub);
/* The noiseless statistics of item j over the clipped item-user matrix Cc:
 * A[f x f] (upper triangle) = sum u u^T, b[f] = sum u over its users'
 * rows of Ub; gather: scratch of (users of j) x f doubles. */
void pvg_dp_ials_item_stats(const pvg_csr *Cc, size_t j, const double *Ub, size_t f, double *gather,
                            double *A, double *b);
/* ---- DP training (dp_train.c; docs/models.md "DP training") ------------- */

/* One DP training run, as the framework hands it to a method's trainer:
 * the vocabulary is chosen and its share of the budget taken off. */
typedef struct pvg_dp_train {
    const pvg_dataset *ds; /* users (keys, store link) */
    pvg_dataset vds;       /* shallow copy of *ds whose items are the vocabulary:
                              for pvg_model_new_common */
    const pvg_csr *R;      /* users x vocabulary: each shopper's full weighted
                              history restricted to the vocabulary (their own
                              rows of the model; never released) */
    const pvg_train_params *p;
    pvg_rng *rng;              /* the noise and sampling source (borrowed) */
    const char *const *titles; /* the vocabulary's public catalogue text
                                  (NULL or NULL entries: none) */
    double epsilon, delta;     /* what the method may spend */
    int max_items;             /* m, the contribution bound */
    int threads;
    pvg_dp_report rep; /* the method fills it for its part */
    /* recency (docs/models.md "Recency"): when the params ask for it, the
     * latest purchase time of each cell of R (INT64_MIN: none) and the
     * training's present; NULL and 0 otherwise */
    const int64_t *last;
    int64_t now;
    /* set by DP-EASE when the params' recency_where_possible let it train
     * without the terms (no projected release): the model records them off */
    int recency_skipped;
    /* set by DP-EASE's text-only model under recency_where_possible: the
     * recent buyers' release kept, the half-life (no Gram) recorded off */
    int recency_no_halflife;
    /* set by DP-EASE's text-only model: the noise std of each of its
     * releases in its statistic's units, in the order of
     * pvg_dp_ease_text_only_statistic (the bounded buyer counts, then the
     * recent buyers' counts; 0: not released), so that the
     * neighbouring-dataset tests can check the noise against the
     * sensitivity they measure */
    double text_only_sigma[2];
} pvg_dp_train;

/* Dispatch (model.c calls it when p->dp_epsilon > 0): validates, chooses
 * the vocabulary, runs the method, fills m->dp with the whole run's
 * guarantee. */
pvg_status pvg_train_dp(const pvg_dataset *ds, const pvg_csr *R, const pvg_train_params *p,
                        pvg_model **out, pvg_train_stats *stats, pvg_error *err);
/* The fingerprint of a DP model (m->dp.epsilon > 0): BLAKE2b-256 of its
 * type, its DP record and its item sections (what it releases), never of
 * the raw data; the loader checks a DP file's header fingerprint against
 * it, so the DP record cannot be edited (or added to another model) while
 * keeping the fingerprint the trainer reported and the ledger recorded. */
void pvg_dp_public_fingerprint(const pvg_model *m, unsigned char out[32]);
/* Contribution bounding: X (new, users x vocabulary) keeps of each row of
 * t->R at most t->max_items items (a uniformly random subset drawn from
 * t->rng when there are more), every kept cell weighing 1. */
pvg_status pvg_dp_bound_rows(const pvg_dp_train *t, pvg_csr *X, pvg_error *err);
/* The model's common parts over the vocabulary (histories from t->R). */
pvg_status pvg_dp_model_new(const pvg_dp_train *t, pvg_model **out, pvg_error *err);
/* The method trainers. DP-iALS (the dpials work) adds its own here. */
pvg_status pvg_train_dp_popularity(pvg_dp_train *t, pvg_model **out, pvg_error *err);
pvg_status pvg_train_dp_itemknn(pvg_dp_train *t, pvg_model **out, pvg_error *err);
pvg_status pvg_train_dp_ease(pvg_dp_train *t, pvg_model **out, pvg_error *err);
/* DP-iALS (dp_ials.c): pvg_train_dp_ials on t->R with t's budget, bound and
 * generator; the model's factor sections as the non-DP iALS has them. */
pvg_status pvg_train_dp_ials_method(pvg_dp_train *t, pvg_model **out, pvg_train_stats *stats,
                                    pvg_error *err);
/* DP-EASE's projected weighted Gram (with catalogue text; docs/models.md):
 * for each row x of R (its items with positive weight, binary) that col
 * maps into the block (col[item] < rows of V, UINT32_MAX: not in it),
 * a = V^T x (V: block x k, row-major, from pvg_content_gram_basis) and Y
 * (k x k, row-major, caller-zeroed) gets w a a^T on its upper triangle,
 * diagonal included, w = min(1, C / s), s = sqrt((|a|^4 + sum a_i^4) / 2)
 * the norm of that upper triangle: one row moves Y's upper triangle by at
 * most C in L2, whatever V. With g > 0 (the noise's grid) each row's term
 * is rounded to whole steps of g before it is added, so the sums are exact
 * and one row moves Y by its own rounded term, at most C + g/2
 * sqrt(k(k+1)/2), whatever the order of the sums. Errors: PVG_ERR_NOMEM,
 * PVG_ERR_UNSUPPORTED (so many rows that the sums of steps could pass
 * 2^53). */
pvg_status pvg_dp_ease_projected_gram(const pvg_csr *R, const uint32_t *col, const float *V,
                                      size_t k, double C, double g, double *Y, pvg_error *err);
/* DP-EASE's recent buyers' counts (recency, docs/models.md "Recency")
 * before their noise, exactly as the trainer computes them from t->R,
 * t->last, t->now and t->p->recent_pop_days with t->rng: *vec (n, caller
 * frees) and *sens the L2 sensitivity the trainer calibrates to: sqrt(m),
 * or 1 with t->p->recent_pop_unit (before its grid's inflation). Errors:
 * PVG_ERR_INVALID (no purchase times or no window), NOMEM. */
pvg_status pvg_dp_ease_recent_statistic(pvg_dp_train *t, double **vec, size_t *len, double *sens,
                                        pvg_error *err) PVG_WARN_UNUSED;
/* DP-EASE's text-only model's statistics (below epsilon 5 with catalogue
 * text; tests: the neighbouring-dataset checks), computed by the trainer's
 * own code with its bound (t->max_items set as the trainer sets it: DP
 * popularity's m unless t->p->dp_max_items): the bounded buyer counts (n),
 * then, when t->last and the recent buyers' window are set, the recent
 * buyers' counts (n more; bounded to m, or unit rows with
 * recent_pop_unit), new in *vec; sens[0] and sens[1] the L2 sensitivities
 * the trainer calibrates each release to (sens[1] 0 without the second;
 * before the unit rows' grid inflation). Errors: NOMEM. */
pvg_status pvg_dp_ease_text_only_statistic(pvg_dp_train *t, double **vec, size_t *len,
                                           double sens[2], pvg_error *err) PVG_WARN_UNUSED;
/* DP-EASE's statistic with catalogue text (tests: the neighbouring-dataset
 * checks), computed by the trainer's own code: given a released popularity
 * pop (n, >= 0; the trainer's is noisy, a test passes the same vector on
 * both datasets), the block of the trainer's size, the basis of t->titles
 * and pop, and the upper triangle, diagonal included, of the projected
 * Gram, row by row (k(k+1)/2, new in *vec); *sens the L2 sensitivity the
 * trainer calibrates to (before its grid's inflation). Errors:
 * PVG_ERR_INVALID (a negative or NaN pop, by index; titles that link no
 * two items), NOMEM, INTERNAL (LAPACK). */
pvg_status pvg_dp_ease_text_statistic(pvg_dp_train *t, const float *pop, double **vec, size_t *len,
                                      double *sens, pvg_error *err);
/* The statistic a method adds its noise to, exactly as its trainer computes
 * it (tests: the neighbouring-dataset checks), from t->R with t->rng:
 * popularity the bounded item counts (n), itemknn the upper triangle,
 * diagonal included, of the bounded Gram X^T X (n(n+1)/2, row by row), ease
 * that of its weighted Gram (its second release without catalogue text;
 * with text the release is pvg_dp_ease_projected_gram's). *sens gets the L2
 * sensitivity the trainer calibrates to (DP-EASE's before its grid's
 * inflation). */
pvg_status pvg_dp_statistic(pvg_dp_train *t, pvg_model_type type, double **vec, size_t *len,
                            double *sens, pvg_error *err);

/* ---- evaluation splits ----------------------------------------------------- */

/* A split: per event, 0 = unused, 1 = train, 2 = target (test), 3 = fold-in
 * history of a held-out user. */
enum { PVG_SPLIT_NONE = 0, PVG_SPLIT_TRAIN = 1, PVG_SPLIT_TEST = 2, PVG_SPLIT_FOLDIN = 3 };
pvg_status pvg_eval_split(const pvg_dataset *ds, const pvg_eval_options *o, uint8_t *role,
                          pvg_error *err);
/* The recency terms of an evaluation's training (docs/models.md
 * "Recency"), set in *tp when tp has a term: with tp->recency_now 0, the
 * present is the temporal split's training boundary (the cut-off, or the
 * validation's), so no held-out purchase (a re-buy after the cut-off) dates
 * a training cell; a caller's present after that boundary would, and is
 * refused (PVG_ERR_INVALID naming both). The other protocols hold whole
 * cells out from throughout the training period and so have no present:
 * the defaults (recency_where_possible) are cleared there, an explicit
 * request without a present gets one second after the latest training
 * event, a caller's present is kept. Without DP, a caller's present whose
 * recent buyers' window holds no training event is refused
 * (pvg_recency_window_check_role), as `train` refuses it. */
pvg_status pvg_eval_recency_apply(const pvg_dataset *ds, const pvg_eval_options *o,
                                  const uint8_t *role, pvg_train_params *tp,
                                  pvg_error *err) PVG_WARN_UNUSED;

/* Per-user metrics for one ranked list (for tests). */
void pvg_eval_user_metrics(const int64_t *ranked, size_t n_ranked, const uint32_t *targets,
                           size_t n_targets, int k, double *recall, double *ndcg, double *precision,
                           double *ap, double *hr);

/* dataset.c: what pvg_dataset_load_store and the access gate's training
 * selection share. A new store-keyed dataset linked to the store (it
 * carries the store's model key, so models trained on it are saved
 * sealed); and a pvg_user_events_fn adding one user's events to ctx->ds,
 * counting into ctx->s (ctx->st gets the first failure). */
pvg_status pvg_dataset_new_store_linked(pvg_store *store, const pvg_event_weights *weights,
                                        pvg_dataset **out, pvg_error *err) PVG_WARN_UNUSED;
typedef struct pvg_dataset_store_ctx {
    pvg_dataset *ds;
    pvg_dataset_load_stats *s;
    pvg_error *err;
    pvg_status st;
} pvg_dataset_store_ctx;
int pvg_dataset_store_user_cb(void *ctx, const pvg_user_view *user, const pvg_event *events,
                              size_t n_events);

#endif
