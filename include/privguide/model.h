/*
 * privguide/model.h - the recommendation engine: interaction datasets,
 * training (popularity, item-kNN, iALS, EASE, BPR), model files and top-k
 * serving.
 *
 * Data flow: events (from a file reader or the store) are folded into a
 * pvg_dataset: users known only by a 16-byte key (the store pseudonym, or a
 * keyed BLAKE2b of the external id under a random salt), items by their
 * external catalog id, each event weighted by its type (pvg_event_weights).
 * pvg_model_train turns the dataset into a pvg_model; pvg_model_save writes
 * it as a versioned, checksummed binary file that pvg_model_load maps back
 * read-only (docs/models.md describes the format). A model trained from the
 * store is personal data: its file seals each shopper's rows (history and
 * factors) under a key derived from that shopper's data key, so erasing the
 * shopper (pvg_store_user_delete destroys the data key) shreds their rows in
 * every copy of the file, backups included; pvg_model_load_store opens the
 * rows whose keys the store still holds. Such files live only in the data
 * dir or its models/ sub-directory, where pvg_store_user_delete also
 * removes the shopper's (already unreadable) rows (pvg_model_dir_erase_user).
 * A model trained from a file keys its users by a salted hash: it is for
 * evaluation on files, never saved inside a data dir nor used with a store.
 *
 * Thread-safety: a pvg_model, once trained or loaded, is read-only and may
 * be shared by any number of threads for the serving calls. A pvg_dataset
 * is read-only after it is built; building it is single-threaded.
 */
#ifndef PRIVGUIDE_MODEL_H
#define PRIVGUIDE_MODEL_H

#include <privguide/common.h>
#include <privguide/event.h>
#include <privguide/import.h>
#include <privguide/rng.h>
#include <privguide/store.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

#define PVG_MODEL_KEY_BYTES 16

typedef enum pvg_model_type {
    PVG_MODEL_POPULARITY = 1,
    PVG_MODEL_ITEMKNN = 2,
    PVG_MODEL_IALS = 3,
    PVG_MODEL_EASE = 4,
    PVG_MODEL_BPR = 5
} pvg_model_type;

/* "popularity", "itemknn", "ials", "ease", "bpr"; "?" when out of range. */
const char *pvg_model_type_name(pvg_model_type t);
/* PVG_OK or PVG_ERR_INVALID (err lists the known names). */
pvg_status pvg_model_type_parse(const char *name, pvg_model_type *out,
                                pvg_error *err) PVG_WARN_UNUSED;

/* ---- event weighting ------------------------------------------------- */

/* Weight of one event of each type. An event adds its type's weight to its
 * (user, item) cell; repeats sum; a return (type PVG_EVENT_RETURN, or a
 * purchase with negative quantity) subtracts the purchase weight. Cells whose
 * sum is <= 0 are not interactions. A rating event with a rating value
 * weighs w[RATING] x the value (the tsv format's weight column arrives as a
 * rating, so a negative tsv weight subtracts). Defaults (pvg_event_weights_default):
 * view 1, cart 2, purchase 4, return -4 (applied as -purchase), rating 1,
 * search PVG_SEARCH_WEIGHT_DEFAULT. A search event names the item a shopper
 * clicked, or, in a dataset read from a store, its query leads to the top
 * PVG_SEARCH_FEED_TOP results over the store's catalog (an anonymous
 * search's ranking, no synonyms), each getting w[SEARCH] (docs/search.md,
 * "Search events in training"); search=0 ignores them. */
#define PVG_SEARCH_WEIGHT_DEFAULT 0.25
#define PVG_SEARCH_FEED_TOP 3
typedef struct pvg_event_weights {
    double w[PVG_EVENT_TYPE_COUNT];
} pvg_event_weights;

void pvg_event_weights_default(pvg_event_weights *w);

/* Parses "view=1,cart=2,purchase=4,rating=1" (any subset; the rest keep the
 * defaults) into *w. PVG_ERR_INVALID names the bad entry. */
pvg_status pvg_event_weights_parse(const char *spec, pvg_event_weights *w,
                                   pvg_error *err) PVG_WARN_UNUSED;

/* ---- datasets ---------------------------------------------------------- */

typedef struct pvg_dataset pvg_dataset;

typedef enum pvg_user_keying {
    PVG_KEY_SALTED_HASH = 1,    /* keyed BLAKE2b-128(salt, external id) */
    PVG_KEY_STORE_PSEUDONYM = 2 /* the store's pseudonym */
} pvg_user_keying;

/* Creates an empty dataset. weights NULL: defaults. salt NULL: a random
 * 16-byte salt (keying PVG_KEY_SALTED_HASH); keying PVG_KEY_STORE_PSEUDONYM
 * takes user keys as given. *out is new (pvg_dataset_free). */
pvg_status pvg_dataset_new(pvg_user_keying keying, const pvg_event_weights *weights,
                           const unsigned char salt_or_null[16], pvg_dataset **out,
                           pvg_error *err) PVG_WARN_UNUSED;
void pvg_dataset_free(pvg_dataset *ds);

/* Adds one event of the user with key `user_key` (16 bytes). Events without
 * an item and events whose type weighs 0 are ignored (returns PVG_OK).
 * Errors: PVG_ERR_NOMEM, PVG_ERR_INVALID (ids too many: > 2^31). */
pvg_status pvg_dataset_add(pvg_dataset *ds, const unsigned char user_key[16], const pvg_event *ev,
                           pvg_error *err) PVG_WARN_UNUSED;
/* Same, keyed by an external user id hashed with the dataset's salt
 * (PVG_ERR_STATE for a PVG_KEY_STORE_PSEUDONYM dataset). */
pvg_status pvg_dataset_add_ext(pvg_dataset *ds, const char *ext_user, const pvg_event *ev,
                               pvg_error *err) PVG_WARN_UNUSED;

typedef struct pvg_dataset_load_stats {
    long long records, events, rejects, anonymous, ignored;
} pvg_dataset_load_stats;

/* Streams a file through pvg_reader_open/next into a new salted-hash
 * dataset. Rejected rows are counted (not fatal). stats may be NULL.
 * Errors: those of the reader; PVG_ERR_INVALID when no event was read. */
pvg_status pvg_dataset_load_file(const char *path, pvg_format fmt, const pvg_reader_options *ropts,
                                 const pvg_event_weights *weights, pvg_dataset **out,
                                 pvg_dataset_load_stats *stats, pvg_error *err) PVG_WARN_UNUSED;

/* Reads every user of the store that consents to personalisation
 * (pvg_store_foreach_user) into a new PVG_KEY_STORE_PSEUDONYM dataset. */
pvg_status pvg_dataset_load_store(pvg_store *store, const pvg_event_weights *weights,
                                  pvg_dataset **out, pvg_dataset_load_stats *stats,
                                  pvg_error *err) PVG_WARN_UNUSED;

size_t pvg_dataset_n_users(const pvg_dataset *ds);
size_t pvg_dataset_n_items(const pvg_dataset *ds);
size_t pvg_dataset_n_events(const pvg_dataset *ds);
/* The operator's check of an EASE training without DP (its model is
 * personal data, never shown to others): whether the recent buyers' window
 * [present - days, present) holds an event of ds. PVG_OK when it does or
 * days is 0; PVG_ERR_INVALID otherwise, naming the window, the present and
 * the latest event before it (or none): the term would be empty (a present
 * before the data, or long after it). A present outside +-1e12 seconds or
 * days outside [0, 1e6] (a training's own ranges) is PVG_ERR_INVALID naming
 * it. Never for a DP training, which is not gated on the data
 * (docs/models.md "Recency"). */
pvg_status pvg_recency_window_check(const pvg_dataset *ds, int64_t present, double days,
                                    pvg_error *err) PVG_WARN_UNUSED;
/* The dataset's user key of ext_user (salted hash). PVG_ERR_STATE for a
 * store-keyed dataset. */
pvg_status pvg_dataset_user_key(const pvg_dataset *ds, const char *ext_user, unsigned char key[16],
                                pvg_error *err) PVG_WARN_UNUSED;

/* ---- training ---------------------------------------------------------- */

typedef struct pvg_train_progress {
    int epoch;   /* 1-based epoch just finished */
    int epochs;  /* total */
    double loss; /* objective (iALS) or mean sample loss (BPR); NAN if none */
    double epoch_seconds;
    double elapsed_seconds;
} pvg_train_progress;

/* Hyperparameters. pvg_train_params_default fills the documented defaults
 * for a model type (docs/models.md); fields irrelevant to a type are
 * ignored. */
/* iALS's reg and alpha in DP training when the caller leaves them at their
 * data-derived default (< 0): fixed, since the data's degrees are private. */
#define PVG_IALS_DP_REG 0.03
#define PVG_IALS_DP_ALPHA 3.0

typedef struct pvg_train_params {
    pvg_model_type type;
    int threads;   /* worker threads; 0: 1 */
    uint64_t seed; /* initialisation and sampling seed */
    /* factor models (ials, bpr) */
    int factors;
    int epochs;
    double reg; /* iALS lambda (< 0, the iALS default: 1 / g from the data's degrees,
                   g = nnz / sqrt(active users x active items); docs/models.md); BPR L2 */
    /* iALS (Rendle et al. 2021) */
    double alpha0;     /* weight of unobserved pairs; < 0: alpha * nnz / (|U| |I|) */
    double alpha;      /* when alpha0 < 0: the unobserved pairs' total weight relative
                          to the observed ones (scale-free; < 0, the default: clamp(g / 15,
                          1, 3) from the data's degrees). DP training never derives reg or
                          alpha from the data (fixed 0.03 and 3). */
    double nu;         /* frequency scaling exponent of the regularisation */
    double confidence; /* observed weight 1 + confidence * log1p(w); 0 = binary */
    int cg_steps;      /* conjugate-gradient steps per solve; 0 = exact Cholesky */
    double init_std;   /* initial factor std; 0: 0.1 / sqrt(factors) */
    /* BPR */
    double lr;
    /* EASE */
    double ease_lambda;
    /* item-kNN */
    int neighbors;
    double shrink;
    /* EASE: refuse to start (PVG_ERR_UNSUPPORTED) when the memory estimate
     * (pvg_model_memory_estimate) exceeds this many MiB; 0: no limit */
    double max_memory_mb;
    /* differential privacy at the shopper level (one shopper added or removed
     * with all their events; docs/models.md "DP training"). dp_epsilon > 0
     * trains with (dp_epsilon, dp_delta)-DP; 0: not private. */
    double dp_epsilon;
    double dp_delta;
    int dp_max_items;           /* contribution bound m: items kept per shopper; 0: the
                                   model's default */
    double dp_noise_multiplier; /* experts: noise std / sensitivity; 0: calibrated from
                                   dp_epsilon and dp_delta */
    pvg_rng *dp_rng;            /* borrowed: the noise source; NULL: a new CSPRNG for
                                   the run. A deterministic generator is refused
                                   unless dp_allow_insecure_rng (tests only). */
    int dp_allow_insecure_rng;
    /* the public item vocabulary of a DP run (docs/models.md "DP training"):
     * from a store dataset, its catalog items (pvg_item.catalog); from a file
     * dataset, dp_items[0..dp_n_items) (borrowed ids of a catalog or domain
     * list the caller names) or, when NULL, DP partition selection over the
     * file's items at dp_select_share of dp_epsilon (0: 0.1) and half of
     * dp_delta, accounted in the model's (epsilon, delta) */
    const char *const *dp_items;
    size_t dp_n_items;
    /* optional, parallel to dp_items: each listed item's public catalogue
     * text (its title; NULL entries: none), borrowed. Never taken from the
     * events' rows (text that only a shopper's rows carry would depend on
     * that shopper), so not from a store either, whose titles may come
     * from sale rows (docs/store.md).
     * DP-EASE uses the text as a prior (docs/models.md "A prior from the
     * catalogue's text"). */
    const char *const *dp_item_titles;
    double dp_select_share;
    /* EASE and DP-EASE with catalogue text, recency (docs/models.md
     * "Recency"); all 0: off. recency_now is the training's present (Unix
     * seconds): events at or after it are ignored by the recency terms (0:
     * one second after the latest event, refused like a given present
     * outside +-1e12 seconds; DP-EASE refuses 0, the latest event being
     * one shopper's data). With recency_halflife_days > 0
     * each history item weighs 2^(-age / half-life) in the Gram (age: since
     * the shopper's latest purchase of it; scoring stays binary). With
     * recent_pop_days > 0 and recent_pop_beta > 0 every row of B gets
     * beta * rms(B) * r_j / max r, r_j the shoppers who bought item j in the
     * last recent_pop_days (DP: each shopper's m items at most, a discrete
     * Gaussian release at recent_pop_share of the run's zCDP rho, 0: 0.05;
     * below 0.5 beside DP-EASE's Gram, up to 1 exclusive in its text-only
     * model, which mixes the counts into its prior's popularity instead).
     * recent_pop_unit 1 (with the window): each shopper's window items
     * count 1/sqrt(k) each, k the items they bought in the window (the
     * row's L2 norm 1; DP: L2 sensitivity 1 instead of sqrt(m), no bound
     * to m), for EASE and DP-EASE alike.
     * EASE only; bad values (NaN, negative, a window without its beta, the
     * row norm or share without their term) are refused, naming the field
     * (docs/models.md "Recency"). */
    int64_t recency_now;
    double recency_halflife_days;
    int recency_row_norm; /* with the half-life: each row's weights scaled to the
                             binary row's L2 norm (a tilt towards recent items,
                             the shopper's mass unchanged; DP: still clipped) */
    double recent_pop_days;
    double recent_pop_beta;
    double recent_pop_share;
    int recent_pop_unit;
    /* 1: where DP-EASE cannot apply the recency terms (no projected release:
     * epsilon below 5, or no catalogue text linking items) it trains without
     * them instead of refusing; the model's recency record
     * (pvg_model_recency_get) then says "off". Whether they apply depends on
     * epsilon and the public text only. Set by
     * pvg_train_params_recency_default; 0: refused, as an explicit request. */
    int recency_where_possible;
    /* progress callback after each epoch (may be NULL) */
    void (*progress)(void *ctx, const pvg_train_progress *p);
    void *progress_ctx;
} pvg_train_params;

void pvg_train_params_default(pvg_model_type type, pvg_train_params *p);

/* The recency terms chosen on Online Retail's validation split
 * (docs/models.md "Recency") into p, for EASE (other types: unchanged),
 * after the DP parameters (dp_epsilon, dp_delta, dp_noise_multiplier) are
 * set: without DP, a half-life of 240 days and the recent buyers' blend
 * (7 days, beta 0.7); with DP, the row-normalised half-life of 120 days and
 * the blend (14 days, beta 1, 15% of the budget, each shopper's window
 * items at unit L2 norm); below epsilon 5 (the epsilon the noise
 * multiplier gives, when set), DP-EASE's text-only model, the recent
 * buyers alone (60 days, unit rows, 90% of the budget) mixed into its
 * prior's popularity, scaled to 8 times the year's total (beta 8).
 * present is the training's "now" (Unix seconds; events at or after it
 * are ignored by the terms):
 * DP needs a public one, e.g. the wall-clock time of the training, never
 * one read from the data; 0 (without DP only) is one second after the
 * latest event. Sets recency_where_possible. */
void pvg_train_params_recency_default(pvg_train_params *p, int64_t present);

/* The recency settings a model was trained with (docs/models.md "Recency"):
 * on 0 when it was trained without them (every other field 0). Read from a
 * model's header, so a loaded model reports what its trainer used. */
typedef struct pvg_model_recency {
    int on;
    int64_t present;       /* the training's present (Unix seconds); 0 with present_from_data */
    int present_from_data; /* 1: the present was one second after the latest event, a
                              shopper's purchase time: used in training, never recorded */
    double halflife_days;  /* 0: no decay in the Gram */
    int row_norm;          /* the decay's weights scaled to the row's norm */
    double recent_days;    /* the recent buyers' window (0: no blend) */
    double recent_beta;    /* its weight in B */
    double recent_share;   /* DP: its share of the run's zCDP rho */
    int recent_unit;       /* each shopper's window items at unit L2 norm */
} pvg_model_recency;

#define PVG_TRAIN_MAX_EPOCHS 1000
typedef struct pvg_train_stats {
    double train_seconds;
    int n_epochs;
    double epoch_seconds[PVG_TRAIN_MAX_EPOCHS];     /* wall clock */
    double epoch_cpu_seconds[PVG_TRAIN_MAX_EPOCHS]; /* process CPU time, all threads */
    double final_loss;
} pvg_train_stats;

typedef struct pvg_model pvg_model;

typedef struct pvg_scored_item {
    int64_t item_index;
    const char *item; /* external id, borrowed from the model */
    float score;
} pvg_scored_item;

/* Trains a model of p->type on ds (all of its interactions). stats may be
 * NULL. *out is new (pvg_model_free). With p->dp_epsilon > 0 the model is
 * trained with shopper-level (dp_epsilon, dp_delta)-DP by the DP trainer of
 * its type (popularity, itemknn, ease; docs/models.md "DP training") over
 * the public vocabulary (above): each shopper's contribution bounded to
 * dp_max_items items, noise from dp_rng (NULL: a new CSPRNG), the record in
 * the model (pvg_model_dp_info_get); the caller charges that record's
 * (epsilon, delta) to the store's ledger before the model leaves. Errors:
 * PVG_ERR_INVALID (bad hyperparameter or DP parameter, empty dataset),
 * PVG_ERR_UNSUPPORTED (EASE on a catalog larger than PVG_EASE_MAX_ITEMS, or
 * whose memory estimate exceeds p->max_memory_mb; a model type without a DP
 * trainer), PVG_ERR_POLICY (a deterministic dp_rng without
 * dp_allow_insecure_rng), PVG_ERR_NOMEM. */
#define PVG_EASE_MAX_ITEMS 30000
pvg_status pvg_model_train(const pvg_dataset *ds, const pvg_train_params *p, pvg_model **out,
                           pvg_train_stats *stats, pvg_error *err) PVG_WARN_UNUSED;

/* What training p->type on ds will need, before it starts. EASE only
 * (other types: PVG_ERR_UNSUPPORTED): it runs over the items with
 * interactions (and the users with any), in the dual form (the user Gram,
 * Woodbury) when those users are fewer than those items, else the primal
 * (the item Gram); bytes is the peak estimate, the model's n_items^2 B
 * included. */
typedef struct pvg_train_estimate {
    double bytes;
    const char *form; /* static: "primal" or "dual" */
    size_t users, items;
} pvg_train_estimate;
pvg_status pvg_model_memory_estimate(const pvg_dataset *ds, const pvg_train_params *p,
                                     pvg_train_estimate *out, pvg_error *err) PVG_WARN_UNUSED;

/* The DP record of a model (docs/models.md "DP training"): is_dp 0 for a
 * model trained without DP (all other fields zero). epsilon and delta are
 * the guarantee at the shopper level of the whole run, vocabulary selection
 * included (what the ledger is charged); sensitivity the L2 (Laplace: L1)
 * sensitivity of the noisy statistic, noise_multiplier its noise std (or
 * Laplace scale) / sensitivity; max_items the contribution bound m; clip the
 * method's other clipping bound (0: none); vocabulary how the item set was
 * chosen. */
#define PVG_DP_MECHANISM_MAX 48
typedef enum pvg_dp_vocabulary {
    PVG_DP_VOCAB_NONE = 0,     /* not DP */
    PVG_DP_VOCAB_CATALOG = 1,  /* the store's catalog items */
    PVG_DP_VOCAB_LIST = 2,     /* a domain list the caller named (pvg_train_params.dp_items) */
    PVG_DP_VOCAB_SELECTED = 3, /* DP partition selection over the data's items */
} pvg_dp_vocabulary;
typedef struct pvg_model_dp_info {
    int is_dp;
    double epsilon, delta;
    double noise_multiplier;
    double sensitivity;
    int max_items;
    double clip;
    char
        mechanism[PVG_DP_MECHANISM_MAX]; /* e.g. "dp-ease/discrete-gaussian-gram"; "" when not DP */
    pvg_dp_vocabulary vocabulary;
} pvg_model_dp_info;

/* Fills *out from the model (trained or loaded; files of format 1 to 3
 * were never DP). Errors: PVG_ERR_INVALID (NULL argument). */
pvg_status pvg_model_dp_info_get(const pvg_model *m, pvg_model_dp_info *out,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* Fills *out with the recency settings m was trained with. Errors:
 * PVG_ERR_INVALID (NULL argument). */
pvg_status pvg_model_recency_get(const pvg_model *m, pvg_model_recency *out,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* Charges a DP-trained model's recorded (epsilon, delta) to the store's
 * budget (purpose model_builds), the release naming the model's type, bound,
 * vocabulary and fingerprint (which covers the DP record and the item
 * sections). Call it before the model leaves (is saved where it is
 * served). *release_id (may be NULL) gets the ledger's id. Errors:
 * PVG_ERR_INVALID (not a DP model), those of pvg_ledger_charge
 * (PVG_ERR_BUDGET: nothing charged). */
pvg_status pvg_model_dp_charge(pvg_store *s, const pvg_model *m, int64_t *release_id,
                               pvg_error *err) PVG_WARN_UNUSED;
/* *charged = 1 when the store's ledger holds a model_builds release naming
 * this model's fingerprint with at least its recorded (epsilon, delta): the
 * check a server makes before it shows a DP model's output to anyone. */
pvg_status pvg_model_dp_charged(pvg_store *s, const pvg_model *m, int *charged,
                                pvg_error *err) PVG_WARN_UNUSED;
/* The contribution bound m a DP trainer of type t uses when
 * pvg_train_params.dp_max_items is 0; 0 for a type without a DP trainer.
 * One exception: DP-EASE below epsilon 5 with catalogue text releases only
 * the buyer counts (and the recent buyers') and bounds them as DP
 * popularity does (the model's DP record, pvg_model_dp_info_get, has the
 * bound used). */
int pvg_dp_default_max_items(pvg_model_type t);
/* "catalog", "list", "selected"; "" for PVG_DP_VOCAB_NONE. */
const char *pvg_dp_vocabulary_name(pvg_dp_vocabulary v);

/* Writes the model file: to a temp file beside path (0600), fsynced,
 * renamed over path, the directory fsynced; writers of one directory
 * (save, erase) are serialised by a lock on it. A model linked to a store
 * (trained from pvg_dataset_load_store, or opened with
 * pvg_model_load_store / pvg_model_unseal) is written with each shopper's
 * rows (history, user factors) sealed on their own under a key derived from
 * that shopper's data key and the model's seal id (XChaCha20-Poly1305,
 * fresh nonces); a shopper whose data key was already gone at training is
 * left out. Its path must pass pvg_model_path_check_store for its store's
 * data dir. The item sections stay plain. A model trained from a file is
 * written plain and never inside a data dir (pvg_model_path_in_data_dir).
 * Errors: PVG_ERR_IO, PVG_ERR_NOMEM, PVG_ERR_INVALID (a path outside the
 * store's model places, or a file-trained model inside a data dir),
 * PVG_ERR_STATE (a store-keyed model without its store link, or one whose
 * rows are still sealed). */
pvg_status pvg_model_save(const pvg_model *m, const char *path, pvg_error *err) PVG_WARN_UNUSED;

/* Where a store-trained model file may live: directly in the data dir, or
 * in its sub-directory PVG_MODEL_SUBDIR. Erasure scans exactly these two
 * directories (dot-files included). */
#define PVG_MODEL_SUBDIR "models"

/* PVG_OK when path (a file that may not exist yet) resolves (symbolic links
 * and ".." followed) to a place where a model trained from the store of
 * data_dir may live, and is not itself a link; PVG_ERR_INVALID (err names
 * both places) otherwise, PVG_ERR_IO when a directory does not exist. */
pvg_status pvg_model_path_check_store(const char *path, const char *data_dir,
                                      pvg_error *err) PVG_WARN_UNUSED;

/* 1 when path's directory, or any directory above it, holds a store. */
int pvg_model_path_in_data_dir(const char *path);

/* Maps and validates a model file: magic, version (1 to 4), section
 * bounds, checksum, the rows directory of a sealed file. A file with sealed
 * rows loads its item side only: similar, popular and history-based
 * recommendations work, per-user recommendations answer PVG_ERR_STATE
 * until pvg_model_unseal. Errors: PVG_ERR_IO, PVG_ERR_CORRUPT (truncated,
 * checksum mismatch, bad section; err says which and at what offset),
 * PVG_ERR_UNSUPPORTED (format version; a store-trained file of format 1 or
 * 2, whose rows erasure cannot shred: retrain it). *out is new. */
pvg_status pvg_model_load(const char *path, pvg_model **out, pvg_error *err) PVG_WARN_UNUSED;

/* Opens the sealed rows of a loaded store-trained model with the store:
 * each shopper's data key is read once from the key store, their row key
 * derived and their rows decrypted into locked memory (sodium_malloc;
 * wiped by pvg_model_free). A shopper whose data key is gone (erased), or
 * whose row does not open under it (a new shopper of the same id), is
 * absent from the opened model (pvg_model_n_shredded counts them). Links
 * the model to the store (a later save seals again). Not thread-safe:
 * call it before sharing the model. Errors: PVG_ERR_INVALID (a model
 * trained from a file: it is never used with a store; or the file lies
 * outside the store's model places, pvg_model_path_check_store),
 * PVG_ERR_CRYPTO (no shopper of the file opens: another store's model, or
 * a data key cannot be unwrapped), PVG_ERR_CORRUPT, PVG_ERR_NOMEM. */
pvg_status pvg_model_unseal(pvg_model *m, pvg_store *store, pvg_error *err) PVG_WARN_UNUSED;

/* Rows of the file that pvg_model_unseal could not open (shredded). */
size_t pvg_model_n_shredded(const pvg_model *m);

/* pvg_model_load then pvg_model_unseal. *out is new. */
pvg_status pvg_model_load_store(const char *path, pvg_store *store, pvg_model **out,
                                pvg_error *err) PVG_WARN_UNUSED;

/* 1 when the model's per-shopper sections are (or will be, on save) sealed:
 * it is keyed by store pseudonyms. */
int pvg_model_is_sealed(const pvg_model *m);

/* Erasure: removes the shopper with this store pseudonym from the
 * store-trained model file at path, atomically (the file is rewritten
 * without their directory entry and sealed row, the other rows copied as
 * they are, then renamed over the old one; the old file's rows region is
 * overwritten with zeros before it is closed). Their row is unreadable
 * already once their data key is destroyed; this removes the pseudonym
 * and the ciphertext too. No key is needed. Item sections (factors,
 * similarities, popularity counts) keep the shopper's aggregate
 * contribution until the next training. *removed (may be NULL): 1 when the
 * shopper was in the model. Errors: those of pvg_model_load and
 * pvg_model_save, PVG_ERR_INVALID (a model trained from a file). */
pvg_status pvg_model_file_erase_user(const char *path, pvg_store *store,
                                     const unsigned char pseudonym[16], int *removed,
                                     pvg_error *err) PVG_WARN_UNUSED;

/* The same for every model file in dir and in dir/PVG_MODEL_SUBDIR
 * (recognised by their magic, whatever their name, dot-files included;
 * leftover temp files of an interrupted save are deleted).
 * pvg_store_user_delete calls it on the data dir. *rewritten (may be
 * NULL): files rewritten. A model file it cannot erase (trained from a
 * file, an older format, corrupt, a symbolic link to a model file) is an
 * error, never skipped: the other files are still processed, and err names
 * the first such file (and how many more). */
pvg_status pvg_model_dir_erase_user(const char *dir, pvg_store *store,
                                    const unsigned char pseudonym[16], int *rewritten,
                                    pvg_error *err) PVG_WARN_UNUSED;
void pvg_model_free(pvg_model *m);

pvg_model_type pvg_model_type_of(const pvg_model *m);
size_t pvg_model_n_items(const pvg_model *m);
size_t pvg_model_n_users(const pvg_model *m);
pvg_user_keying pvg_model_keying(const pvg_model *m);
/* The 32-byte fingerprint of the training data (BLAKE2b of its cells). */
const unsigned char *pvg_model_fingerprint(const pvg_model *m);

/* The model's key for an external user: the store pseudonym for a
 * store-trained model (store_or_null required, else PVG_ERR_INVALID), the
 * salted hash for a file-trained one. */
pvg_status pvg_model_user_key(const pvg_model *m, pvg_store *store_or_null, const char *ext_user,
                              unsigned char key[16], pvg_error *err) PVG_WARN_UNUSED;

/* Top-k items for a known user, best first (ties: lower item index), into
 * out[k]; *n_out <= k. One scoring pass over all items (factor models: a
 * matrix-vector product over half-precision item factors) and a bounded-heap
 * selection. Seen (training) items are excluded unless include_seen; a user
 * without history gets the popularity ranking. PVG_ERR_NOT_FOUND when the
 * model does not know the user. out[i].item is borrowed from the model.
 * Thread-safe. */
pvg_status pvg_model_recommend(const pvg_model *m, const unsigned char user_key[16], size_t k,
                               int include_seen, pvg_scored_item *out, size_t *n_out,
                               pvg_error *err) PVG_WARN_UNUSED;

/* Batched form: n users, out is n*k, n_out[n]; a user the model does not
 * know gets n_out 0. threads 0/1: the calling thread only. */
pvg_status pvg_model_recommend_batch(const pvg_model *m, const unsigned char *user_keys, size_t n,
                                     size_t k, int include_seen, int threads, pvg_scored_item *out,
                                     size_t *n_out, pvg_error *err) PVG_WARN_UNUSED;

/* Top-k for a history not in the model (fold-in: iALS/BPR solve the user's
 * factors in closed form; EASE and kNN score the history directly). items
 * are model item indices, weights may be NULL (all 1). The history's items
 * are excluded. */
pvg_status pvg_model_recommend_history(const pvg_model *m, const int64_t *items,
                                       const float *weights, size_t n, size_t k,
                                       pvg_scored_item *out, size_t *n_out,
                                       pvg_error *err) PVG_WARN_UNUSED;

/* ---- explanations ("why this?"; docs/models.md "Explanations") ---- */

/* One history item's part in an item's score. */
typedef struct pvg_explain_term {
    int64_t item_index;  /* the shopper's history item (model index) */
    const char *item;    /* its external id, borrowed from the model */
    float weight;        /* the history cell's weight (pvg_event_weights sum) */
    double contribution; /* its term of the score (> 0) */
} pvg_explain_term;

typedef struct pvg_explain_info {
    double score;       /* the sum of every history item's term (popularity: the count) */
    size_t n_history;   /* the shopper's history items in the model */
    size_t n_positive;  /* history items with a term > 0 */
    int exact;          /* 1: the terms sum to the served score (EASE, itemknn) */
    const char *method; /* static: "ease-weights", "itemknn-similarities", "ials-fold-in",
                           "bpr-ridge-surrogate", "popularity" */
} pvg_explain_info;

/* Why the model scores items[t] (model indices, n_items of them) for the
 * user with this model key: the shopper's own history items whose terms
 * of the score are largest, at most k per item, best first (ties: lower
 * index), only terms > 0, into out[t*k .. t*k+n_out[t]). EASE: the weights
 * B[i][j]; itemknn: the kept similarities S[i -> j] (both exact); iALS:
 * c_i v_j^T A^-1 v_i, the terms of the closed-form fold-in of the history
 * (A = alpha0 G + reg I + sum c_i v_i v_i^T), which sum to the fold-in's
 * score, not exactly the trained user factors' (an approximation); BPR:
 * the same ridge terms over its item factors (a surrogate); popularity:
 * no terms. info (n_items, may be NULL) gets the totals and the method.
 * The history is personal data: call it only through the access gate
 * (pvg_access_explain). Thread-safe. Errors: PVG_ERR_INVALID (NULL
 * argument, an index out of range), PVG_ERR_NOT_FOUND (unknown user),
 * PVG_ERR_STATE (rows still sealed), PVG_ERR_NOMEM, PVG_ERR_INTERNAL. */
pvg_status pvg_model_explain(const pvg_model *m, const unsigned char user_key[16],
                             const int64_t *items, size_t n_items, size_t k, pvg_explain_term *out,
                             size_t *n_out, pvg_explain_info *info, pvg_error *err) PVG_WARN_UNUSED;

/* Items most similar to ext_item (cosine of factors; the kNN neighbour
 * list; EASE's column; for popularity, co-occurrence is not kept and the
 * call returns PVG_ERR_UNSUPPORTED). PVG_ERR_NOT_FOUND for an unknown item. */
pvg_status pvg_model_similar(const pvg_model *m, const char *ext_item, size_t k,
                             pvg_scored_item *out, size_t *n_out, pvg_error *err) PVG_WARN_UNUSED;

/* The k most popular items by the (non-DP) counts of distinct users stored
 * in the model. */
pvg_status pvg_model_popular(const pvg_model *m, size_t k, pvg_scored_item *out, size_t *n_out,
                             pvg_error *err) PVG_WARN_UNUSED;

/* Model item index of an external item id, or -1. */
int64_t pvg_model_item_index(const pvg_model *m, const char *ext_item) PVG_WARN_UNUSED;
/* External id of item index i (borrowed), NULL when out of range. */
const char *pvg_model_item_id(const pvg_model *m, int64_t i);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
