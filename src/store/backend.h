/*
 * backend.h - the storage backend under the store: one ops table (function
 * pointers, in the manner of SQLite's VFS) over an opaque backend handle.
 * Everything the library keeps in a database goes through these ops; the
 * SQLite implementation lives in src/store/sqlite/ and nothing else in the
 * tree speaks SQL. Not installed; not part of the public interface.
 *
 * The contract every implementation must honour (atomicity, isolation,
 * ownership, errors) is written in docs/store.md, "The backend interface".
 * In short:
 *  - Every op takes the backend first and a pvg_error (may be NULL) last,
 *    and returns PVG_OK or a status with err filled in: PVG_ERR_NOT_FOUND
 *    (the looked-up row does not exist), PVG_ERR_BUSY (a lock could not be
 *    taken in time), PVG_ERR_IO, PVG_ERR_CORRUPT, PVG_ERR_NOMEM, and
 *    PVG_ERR_ABORTED when an iteration's callback asked to stop (err is
 *    left untouched in that case).
 *  - Pointers passed in are borrowed for the duration of the call. Pointers
 *    handed to callbacks are valid only during that callback. Buffers an op
 *    returns through `char **` / `pvg_item **` are malloc'd and owned by the
 *    caller (free()).
 *  - A backend handle is used by one thread at a time.
 *  - Ops marked [txn] may run inside a write transaction (txn_begin) and
 *    then become durable and visible with txn_commit; outside one, each runs
 *    as its own atomic unit. Ops marked [unit] are atomic on their own
 *    (they take the write lock themselves); inside an open transaction they
 *    join it (a savepoint) and commit with it.
 */
#ifndef PVG_STORE_BACKEND_H
#define PVG_STORE_BACKEND_H

#include <privguide/audit.h>
#include <privguide/ledger.h>
#include <privguide/store.h>

#include <stddef.h>
#include <stdint.h>

#define PVG_BACKEND_PSEUDONYM_BYTES 16
#define PVG_BACKEND_KID_BYTES 8
#define PVG_BACKEND_WRAPPED_MAX 128
#define PVG_BACKEND_HASH_BYTES 32

typedef struct pvg_backend pvg_backend;
typedef struct pvg_backend_ops pvg_backend_ops;

/* Every implementation's handle starts with this (it may embed it as its
 * first member and add its own state after it). */
struct pvg_backend {
    const pvg_backend_ops *ops;
};

/* A user row. */
typedef struct pvg_backend_user {
    int64_t id; /* > 0; never reused, even after the row is deleted */
    unsigned char pseudonym[PVG_BACKEND_PSEUDONYM_BYTES];
    int64_t created_at;
    int consent_personalization, consent_analytics;
} pvg_backend_user;

/* A wrapped data key as stored. The lengths are those stored (a row whose
 * lengths differ from PVG_BACKEND_KID_BYTES / the wrap size is damaged:
 * the store treats it as a key that cannot be unwrapped); the buffers hold
 * at most their size. */
typedef struct pvg_backend_key {
    unsigned char kid[PVG_BACKEND_KID_BYTES];
    size_t kid_len;
    unsigned char wrapped[PVG_BACKEND_WRAPPED_MAX];
    size_t wrapped_len;
} pvg_backend_key;

/* A credential (API key or user token). Strings are borrowed (insert) or
 * held in the struct (get). */
typedef struct pvg_backend_cred {
    char key_id[33];
    char kind[8];      /* "key" or "token" */
    char role[16];     /* "admin", "analyst", "user" */
    const char *label; /* insert only; may be NULL */
    int has_pseudonym;
    unsigned char pseudonym[PVG_BACKEND_PSEUDONYM_BYTES];
    unsigned char secret_hash[PVG_BACKEND_HASH_BYTES];
    size_t secret_hash_len;
    double rate_per_s;
    int64_t created_at, expires_at;
    int revoked;
} pvg_backend_cred;

/* One ingest run, for the ingest log. */
typedef struct pvg_backend_ingest_run {
    int64_t started_at, finished_at;
    const char *format, *source;
    long long read, accepted, rejected, stored, duplicates, anonymous;
} pvg_backend_ingest_run;

/* Callbacks. Iterations: return 0 to go on, non-zero to stop (the op then
 * returns PVG_ERR_ABORTED). A callback may call read ops of the same
 * backend; it must not open or end a transaction. */
typedef int (*pvg_backend_user_fn)(void *ctx, const pvg_backend_user *u);
/* A chunk row as stored (pointers valid during the callback only). */
typedef struct pvg_backend_chunk {
    int64_t row; /* the backend's row id of the chunk */
    int64_t user_id;
    int64_t expires_day;
    int64_t n_events;
    const unsigned char *cid;
    size_t cid_len;
    const unsigned char *sealed;
    size_t sealed_len;
} pvg_backend_chunk;
typedef int (*pvg_backend_chunk_fn)(void *ctx, const pvg_backend_chunk *c);
typedef int (*pvg_backend_item_fn)(void *ctx, const pvg_item *item);
typedef int (*pvg_backend_cred_fn)(void *ctx, const pvg_backend_cred *c);
typedef int (*pvg_backend_anon_fn)(void *ctx, int64_t item_id, pvg_event_type type, long long count,
                                   double quantity);
/* Key rotation: given a stored key, writes its new wrapped form (under the
 * key whose id the op was given) into out (*out_len set); returns PVG_OK or
 * a status (with err filled) that aborts the batch. */
typedef pvg_status (*pvg_backend_rewrap_fn)(
    void *ctx, const unsigned char pseudonym[PVG_BACKEND_PSEUDONYM_BYTES],
    const pvg_backend_key *old, unsigned char *out, size_t *out_len, pvg_error *err);
/* Ledger: decides, under the lock of a ledger_charge or ledger_limit_set
 * (it may call ledger_read to see the state as of inside the lock), whether
 * the write may go ahead: PVG_OK, or a status with err filled (nothing is
 * written). */
typedef pvg_status (*pvg_backend_decide_fn)(void *ctx, pvg_error *err);
typedef int (*pvg_backend_release_fn)(void *ctx, const pvg_ledger_release *r);
/* One row of the ledger as ledger_read hands it out. */
typedef struct pvg_backend_ledger_row {
    enum { PVG_LEDGER_ROW_TOTAL, PVG_LEDGER_ROW_CAP, PVG_LEDGER_ROW_SPENT } kind;
    const char *name; /* CAP: the purpose name; SPENT: the label; TOTAL: NULL */
    double epsilon, delta;
    long long releases; /* SPENT only */
    int migrated;       /* TOTAL only: read from a pre-purpose store's per-label budgets */
} pvg_backend_ledger_row;
typedef int (*pvg_backend_ledger_fn)(void *ctx, const pvg_backend_ledger_row *r);
/* Audit: computes the chain hash of rec (timestamp resolved) after prev. */
typedef void (*pvg_backend_chain_fn)(void *ctx, const unsigned char prev[PVG_BACKEND_HASH_BYTES],
                                     int64_t ts, const pvg_audit_record *rec,
                                     unsigned char out[PVG_BACKEND_HASH_BYTES]);
typedef int (*pvg_backend_audit_fn)(void *ctx, const pvg_audit_entry *e);
typedef int (*pvg_backend_pseudonym_fn)(void *ctx, const unsigned char pseudonym[16]);
/* An assistant conversation as stored (conversation.c): its id, times and
 * the sealed state (pointers valid during the callback only). */
typedef struct pvg_backend_conv {
    unsigned char cid[16];
    int64_t created_at, updated_at, expires_day;
    const unsigned char *sealed;
    size_t sealed_len;
} pvg_backend_conv;
typedef int (*pvg_backend_conv_fn)(void *ctx, const pvg_backend_conv *c);
typedef int (*pvg_backend_conv_scan_fn)(void *ctx, const unsigned char pseudonym[16],
                                        const pvg_backend_conv *c);
/* A meta row (store copy). */
typedef int (*pvg_backend_kv_fn)(void *ctx, const char *key, const char *value);
/* An anonymous count of one source (store copy). */
typedef int (*pvg_backend_anon_source_fn)(void *ctx, const unsigned char source[16],
                                          int64_t item_id, int type, long long count,
                                          double quantity);
/* A row of the ingest log (store copy); format/source never NULL. */
typedef int (*pvg_backend_ingest_fn)(void *ctx, const pvg_backend_ingest_run *r);
/* A quarantined chunk row (store copy). */
typedef struct pvg_backend_quarantined {
    int64_t row;                    /* the backend's row id (ignored by quarantine_insert) */
    int64_t user_id;                /* the user row id it had (a number of the source backend) */
    const unsigned char *pseudonym; /* 16 bytes, or NULL: its user row was gone */
    int64_t expires_day, n_events;
    const unsigned char *cid;
    size_t cid_len;
    const unsigned char *sealed;
    size_t sealed_len;
    const char *reason;
    int64_t quarantined_at;
} pvg_backend_quarantined;
typedef int (*pvg_backend_quarantined_fn)(void *ctx, const pvg_backend_quarantined *qr);
/* A cached DP release as stored (store copy). */
typedef struct pvg_backend_cached {
    const char *kind;
    const unsigned char *fingerprint;
    size_t fp_len;
    const char *dataset, *params, *mechanism, *body;
    int64_t release_id, created_at;
} pvg_backend_cached;
typedef int (*pvg_backend_cached_fn)(void *ctx, const pvg_backend_cached *c);
/* One entry of the declared catalogue (catalog_text_foreach); description
 * may be NULL. */
typedef int (*pvg_backend_catalog_fn)(void *ctx, const char *ext_id, const char *title,
                                      const char *description, int64_t updated_at);

/* The bytes of a tag the duplicate index compares (tags_of_user). */
#define PVG_BACKEND_TAG_KEY 8

/* A row of the duplicate index. */
typedef struct pvg_backend_tag {
    int64_t user_id;
    int64_t expires_day;
    unsigned char tag[16];
} pvg_backend_tag;

struct pvg_backend_ops {
    int version; /* 1 */
    const char *name;

    /* ---- lifecycle ---- */
    void (*close)(pvg_backend *b);
    /* Relaxed durability for this handle (commits survive a crash of the
     * process, not of the machine). Used by the server's audit writer. */
    pvg_status (*set_relaxed_durability)(pvg_backend *b, pvg_error *err);
    /* Moves logged writes into the main files and truncates the logs, so no
     * file keeps freed (wiped) content. PVG_ERR_BUSY when readers hold it. */
    pvg_status (*checkpoint)(pvg_backend *b, pvg_error *err);
    /* Deferred log checkpoints for a handle that commits often (the server's
     * audit writer; NULL: the backend has no such log). wal_defer: this
     * handle's commits no longer checkpoint (they only note the log's size,
     * wal_frames, readable from any thread), and a side connection is made
     * for wal_checkpoint(side = 1), which one other thread at a time may run
     * while this handle commits. wal_checkpoint copies what it can without
     * waiting (*log: frames in the log, *done: frames copied; -1 unknown);
     * PVG_ERR_BUSY when another checkpoint runs. Durability is unchanged: a
     * commit is as durable as its handle's synchronous level made it. */
    pvg_status (*wal_defer)(pvg_backend *b, pvg_error *err);
    long long (*wal_frames)(pvg_backend *b);
    pvg_status (*wal_checkpoint)(pvg_backend *b, int side, long long *log, long long *done,
                                 pvg_error *err);
    /* This handle's commits checkpoint once the log holds `frames` frames
     * (SQLite's default 1000); 0: never. */
    pvg_status (*wal_autocheckpoint)(pvg_backend *b, int frames, pvg_error *err);

    /* ---- transactions ---- */
    /* Takes the write locks of users/keys/chunks/catalog at once (no other
     * writer until commit or rollback). *changes: the change counter as seen
     * inside the transaction. PVG_ERR_STATE when one is open already. */
    pvg_status (*txn_begin)(pvg_backend *b, int64_t *changes, pvg_error *err);
    /* Bumps the change counter, then commits keys before data (a data key
     * is durable before any chunk sealed under it). *changes: the new value.
     * On failure everything is rolled back. */
    pvg_status (*txn_commit)(pvg_backend *b, int64_t *changes, pvg_error *err);
    void (*txn_rollback)(pvg_backend *b); /* no-op when none is open */
    /* The store-wide change counter: monotonic, bumped by every committed
     * write transaction that changes users, keys, consent or chunks (and by
     * the [unit] ops that do), and by every write of credentials or meta.
     * A backend with a read memo (SQLite) bumps in the same atomic unit as
     * an autocommitted write, and its database bumps on writes it did not
     * make (triggers); one without (PostgreSQL) may bump in a statement of
     * its own after the write. Cheap; outside or inside a transaction. */
    pvg_status (*changes_get)(pvg_backend *b, int64_t *changes, pvg_error *err);

    /* ---- users [txn] ---- */
    pvg_status (*user_get)(pvg_backend *b, const unsigned char pseudonym[16], pvg_backend_user *out,
                           pvg_error *err); /* NOT_FOUND */
    pvg_status (*user_insert)(pvg_backend *b, const unsigned char pseudonym[16], int64_t created_at,
                              int consent_personalization, int consent_analytics, int64_t *id,
                              pvg_error *err);
    pvg_status (*consent_set)(pvg_backend *b, int64_t user_id, int personalization, int analytics,
                              int64_t updated_at, pvg_error *err);
    /* Deletes the user row, its chunks, its duplicate-index rows, and every
     * row of every table keyed by user_pseudonym (credentials, other
     * modules' per-user rows). Not the wrapped key (key_delete), not the
     * suppression list. */
    pvg_status (*user_delete)(pvg_backend *b, int64_t user_id, const unsigned char pseudonym[16],
                              pvg_error *err);
    /* Users in id order; only the one with `pseudonym` when non-NULL. */
    pvg_status (*users_foreach)(pvg_backend *b, const unsigned char *pseudonym,
                                pvg_backend_user_fn fn, void *ctx, pvg_error *err);

    /* ---- wrapped keys (the key store) ---- */
    pvg_status (*key_get)(pvg_backend *b, const unsigned char pseudonym[16], pvg_backend_key *out,
                          pvg_error *err); /* NOT_FOUND */
    pvg_status (*key_put)(pvg_backend *b, const unsigned char pseudonym[16],
                          const unsigned char kid[8], const unsigned char *wrapped, size_t len,
                          pvg_error *err); /* [txn]; replaces */
    /* Durable on return when no transaction is open. */
    pvg_status (*key_delete)(pvg_backend *b, const unsigned char pseudonym[16], pvg_error *err);
    /* found = 1 when some key is wrapped under neither kid_a nor kid_b. */
    pvg_status (*key_other_kid_exists)(pvg_backend *b, const unsigned char kid_a[8],
                                       const unsigned char kid_b[8], int *found, pvg_error *err);
    /* [unit] on the key store: rewraps up to `max` keys whose kid is not
     * new_kid (fn gives each new form) and commits them together; *done:
     * how many (0 when none is left). Bumps the change counter after. */
    pvg_status (*keys_rewrap_batch)(pvg_backend *b, const unsigned char new_kid[8], size_t max,
                                    pvg_backend_rewrap_fn fn, void *ctx, long long *done,
                                    pvg_error *err);
    /* The kid new data keys must be wrapped under (set by a rotation);
     * found = 0 when none was set. set is durable on return. */
    pvg_status (*wrap_kid_get)(pvg_backend *b, unsigned char kid[8], int *found, pvg_error *err);
    pvg_status (*wrap_kid_set)(pvg_backend *b, const unsigned char kid[8], pvg_error *err);

    /* ---- sealed chunks [txn] ---- */
    /* Chunk ids are unique per store: inserting a chunk id that exists
     * fails (PVG_ERR_EXISTS) when the unique index is present (see
     * chunks_cid_index). */
    pvg_status (*chunk_insert)(pvg_backend *b, int64_t user_id, int64_t expires_day,
                               int64_t n_events, const unsigned char *cid, size_t cid_len,
                               const unsigned char *sealed, size_t sealed_len, pvg_error *err);
    pvg_status (*chunks_foreach_user)(pvg_backend *b, int64_t user_id, pvg_backend_chunk_fn fn,
                                      void *ctx, pvg_error *err);
    pvg_status (*chunks_count_user)(pvg_backend *b, int64_t user_id, long long *n, pvg_error *err);
    /* Compaction replaces a user's chunks: chunks_delete_user then inserts,
     * in one transaction. */
    pvg_status (*chunks_delete_user)(pvg_backend *b, int64_t user_id, pvg_error *err);
    /* Deletes every chunk (and duplicate-index row) with expires_day <=
     * day; *events: the sum of the chunks' event counts. */
    pvg_status (*chunks_sweep)(pvg_backend *b, int64_t day, long long *events, pvg_error *err);
    /* Every chunk row of the store (users with or without a row), in
     * (user_id, row) order. For `store check`. */
    pvg_status (*chunks_scan)(pvg_backend *b, pvg_backend_chunk_fn fn, void *ctx, pvg_error *err);
    /* [unit] Moves chunk `row` out of the readers' way into the quarantine
     * (kept sealed as it was, with `reason`; pseudonym NULL when its user row
     * is gone). Quarantined rows carrying a pseudonym go with the user's
     * erasure (user_delete). NOT_FOUND when the row is gone. */
    pvg_status (*chunk_quarantine)(pvg_backend *b, int64_t row, const unsigned char *pseudonym,
                                   const char *reason, int64_t at, pvg_error *err);
    /* *n: rows in the quarantine. */
    pvg_status (*quarantine_count)(pvg_backend *b, long long *n, pvg_error *err);
    /* The unique index on chunk ids: *present = 1 when it is in place. With
     * create, tries to build it first (it cannot be while two chunk rows
     * share an id: *present stays 0 and PVG_OK is returned). */
    pvg_status (*chunks_cid_index)(pvg_backend *b, int create, int *present, pvg_error *err);

    /* ---- catalog [txn] ---- */
    pvg_status (*item_find)(pvg_backend *b, const char *ext_id, int64_t *id,
                            pvg_error *err); /* NOT_FOUND */
    /* title/category/attrs_json NULL and price < 0 mean "unknown". */
    pvg_status (*item_insert)(pvg_backend *b, const pvg_item *it, int64_t updated_at, int64_t *id,
                              pvg_error *err);
    /* Overwrites only the known fields of `it` (ext_id ignored). */
    pvg_status (*item_update)(pvg_backend *b, int64_t id, const pvg_item *it, int64_t updated_at,
                              pvg_error *err);
    /* By ext_id when non-NULL, else by id. *out: one malloc'd block (the
     * strings inside it), freed with free(). NOT_FOUND. Here and in
     * items_foreach, it->price is the stored typical price (item_prices_set)
     * or, when none was stored, the last price; it->last_price the last
     * price (the one item_insert/item_update wrote); -1 for unknown. */
    pvg_status (*item_get)(pvg_backend *b, const char *ext_id, int64_t id, pvg_item **out,
                           pvg_error *err);
    pvg_status (*items_foreach)(pvg_backend *b, pvg_backend_item_fn fn, void *ctx, pvg_error *err);
    /* The item's recent prices, as the text item_prices_set stored (*window
     * malloc'd; NULL when none). NOT_FOUND when the row is gone. The text is
     * the store's (store.c): prices "%.15g", space separated, oldest first,
     * at most PVG_ITEM_PRICE_WINDOW of them; the backend keeps it as given.
     * SQLite: columns items.recent_prices TEXT and items.typical_price REAL
     * (both NULL until the first price), added to older stores on open. */
    pvg_status (*item_prices_get)(pvg_backend *b, int64_t id, char **window, pvg_error *err);
    /* Replaces the item's recent prices and its typical price (the median
     * the store computed from them). NOT_FOUND when the row is gone. */
    pvg_status (*item_prices_set)(pvg_backend *b, int64_t id, const char *window, double typical,
                                  pvg_error *err);

    /* ---- anonymous counts [txn] ---- */
    /* Replaces the count of (source, item, type). */
    pvg_status (*anon_put)(pvg_backend *b, const unsigned char source[16], int64_t item_id,
                           int type, long long count, double quantity, pvg_error *err);
    /* Summed over sources, in (item_id, type) order. */
    pvg_status (*anon_foreach)(pvg_backend *b, pvg_backend_anon_fn fn, void *ctx, pvg_error *err);

    /* ---- ingest log and meta [txn] ---- */
    pvg_status (*ingest_run_insert)(pvg_backend *b, const pvg_backend_ingest_run *r,
                                    pvg_error *err);
    /* *value: malloc'd; NOT_FOUND. */
    pvg_status (*meta_get)(pvg_backend *b, const char *key, char **value, pvg_error *err);
    pvg_status (*meta_set)(pvg_backend *b, const char *key, const char *value, pvg_error *err);

    /* ---- counts ---- */
    pvg_status (*counts)(pvg_backend *b, pvg_store_counts *out, pvg_error *err);

    /* ---- credentials ---- */
    pvg_status (*cred_insert)(pvg_backend *b, const pvg_backend_cred *c, pvg_error *err);
    pvg_status (*cred_get)(pvg_backend *b, const char *key_id, pvg_backend_cred *out,
                           pvg_error *err); /* NOT_FOUND */
    /* Marks revoked; *changed: rows changed (0: unknown or revoked already
     * for revoke_user; 0: unknown for revoke). */
    pvg_status (*cred_revoke)(pvg_backend *b, const char *key_id, long long *changed,
                              pvg_error *err);
    pvg_status (*cred_revoke_user)(pvg_backend *b, const unsigned char pseudonym[16],
                                   long long *changed, pvg_error *err);

    /* ---- budget ledger (one total per store; caps per purpose) ---- */
    /* [unit] Under the write lock: asks decide (which may call ledger_read)
     * and records the release under `label` when it says PVG_OK. Two
     * charges never both decide on the same spending. */
    pvg_status (*ledger_charge)(pvg_backend *b, const char *label, const char *what,
                                const char *mechanism, double epsilon, double delta,
                                int64_t created_at, pvg_backend_decide_fn decide, void *ctx,
                                int64_t *release_id, pvg_error *err);
    /* Releases under `label` (NULL: all) in id order (purpose left 0). */
    pvg_status (*releases_foreach)(pvg_backend *b, const char *dataset /* NULL: all */,
                                   pvg_backend_release_fn fn, void *ctx, pvg_error *err);

    /* ---- audit log ---- */
    /* [unit] Appends recs in order after the current head (records with
     * ts 0 get `now`), each hashed by chain over its predecessor's hash
     * (zeros for the first entry). *last_seq: the last entry's seq. */
    pvg_status (*audit_append)(pvg_backend *b, const pvg_audit_record *recs, size_t n, int64_t now,
                               pvg_backend_chain_fn chain, void *ctx, int64_t *last_seq,
                               pvg_error *err);
    /* Entries with seq >= from_seq in seq order, at most limit (> 0). */
    pvg_status (*audit_foreach)(pvg_backend *b, int64_t from_seq, long long limit,
                                pvg_backend_audit_fn fn, void *ctx, pvg_error *err);
    /* Entries whose subject is `subject` in seq order, read through an
     * index by subject: the cost follows that subject's entries, not the
     * length of the log. */
    pvg_status (*audit_of_subject)(pvg_backend *b, const char *subject, pvg_backend_audit_fn fn,
                                   void *ctx, pvg_error *err);
    /* The last entry (found = 0 when the log is empty). */
    pvg_status (*audit_head)(pvg_backend *b, int64_t *seq, unsigned char hash[32], int *found,
                             pvg_error *err);

    /* ---- release cache (the server's DP popular lists) ---- */
    /* *items_json: malloc'd. NOT_FOUND. */
    pvg_status (*release_get)(pvg_backend *b, const unsigned char *fingerprint, size_t fp_len,
                              const char *dataset, int64_t k, double epsilon, char **items_json,
                              int64_t *release_id, pvg_error *err);
    /* Replaces. */
    pvg_status (*release_put)(pvg_backend *b, const unsigned char *fingerprint, size_t fp_len,
                              const char *dataset, int64_t k, double epsilon, const char *mechanism,
                              int64_t release_id, const char *items_json, int64_t created_at,
                              pvg_error *err);

    /* ---- budget ledger, continued ---- */
    /* The whole ledger: the store total (at most one TOTAL row; a store
     * without one but with pre-purpose per-label budgets gives the largest
     * of those, migrated = 1), every purpose cap, and the releases' count
     * and sums per label. Inside or outside a unit. */
    pvg_status (*ledger_read)(pvg_backend *b, pvg_backend_ledger_fn fn, void *ctx, pvg_error *err);
    /* [unit] Under the write lock: asks decide, then sets the store total
     * (purpose NULL) or the cap of `purpose` (clear = 1: removes it). */
    pvg_status (*ledger_limit_set)(pvg_backend *b, const char *purpose, double epsilon,
                                   double delta, int clear, int64_t updated_at,
                                   pvg_backend_decide_fn decide, void *ctx, pvg_error *err);

    /* ---- erasure suppression list (docs/privacy.md) ---- */
    /* Adds a pseudonym (idempotent); nothing else is kept about it. [txn];
     * outside a transaction durable on return and counted as a change. */
    pvg_status (*suppress_add)(pvg_backend *b, const unsigned char pseudonym[16], pvg_error *err);
    pvg_status (*suppress_has)(pvg_backend *b, const unsigned char pseudonym[16], int *found,
                               pvg_error *err);
    /* Every suppressed pseudonym (order unspecified). */
    pvg_status (*suppress_foreach)(pvg_backend *b, pvg_backend_pseudonym_fn fn, void *ctx,
                                   pvg_error *err);

    /* ---- the duplicate index (docs/store.md) ---- */
    /* Every stored event's (user row, tag = the event's keyed record id),
     * with the expiry day of the chunk holding it; a backend may keep only
     * the tag's first 8 bytes (a keyed hash). user_delete removes a user's
     * entries, chunks_sweep those of swept days; compaction
     * (chunks_delete_user) leaves them (the events stay). */
    /* found = 1 when (user_id, tag) is held. */
    pvg_status (*tag_has)(pvg_backend *b, int64_t user_id, const unsigned char tag[16], int *found,
                          pvg_error *err);
    /* [txn] Adds n entries (fastest sorted by user_id, expires_day, tag
     * bytes). Callers look a tag up first: a held (user_id, tag) may be
     * refused with PVG_ERR_EXISTS, or kept twice (harmless). */
    pvg_status (*tags_insert)(pvg_backend *b, const pvg_backend_tag *tags, size_t n,
                              pvg_error *err);
    /* A user's chunks holding fewer than small_n events, and the number of
     * distinct expiry days among them (compaction decides from them). */
    pvg_status (*chunks_stats_user)(pvg_backend *b, int64_t user_id, long long small_n,
                                    long long *small_chunks, long long *days, pvg_error *err);
    /* ---- cached DP releases of any kind (popular list, similar items) ---- */
    /* A release of `kind` ("popular", "similar") for one model build
     * (fingerprint), dataset and parameter string. body: the release as the
     * caller serialised it (DP, public once released); *body malloc'd.
     * release_id / created_at may be NULL. NOT_FOUND. */
    pvg_status (*release_cache_get)(pvg_backend *b, const char *kind, const unsigned char *fp,
                                    size_t fp_len, const char *dataset, const char *params,
                                    char **body, int64_t *release_id, int64_t *created_at,
                                    pvg_error *err);
    /* Replaces the entry of (kind, fingerprint, dataset, params). */
    pvg_status (*release_cache_put)(pvg_backend *b, const char *kind, const unsigned char *fp,
                                    size_t fp_len, const char *dataset, const char *params,
                                    const char *mechanism, int64_t release_id, const char *body,
                                    int64_t created_at, pvg_error *err);
    /* The newest entry of `kind` for the dataset, whatever the model build
     * or parameters (created_at, then release_id, largest). NOT_FOUND. */
    pvg_status (*release_cache_latest)(pvg_backend *b, const char *kind, const char *dataset,
                                       char **body, int64_t *release_id, int64_t *created_at,
                                       pvg_error *err);
    /* ---- the duplicate index, read per user (appended in interface 1) ---- */
    /* The first PVG_BACKEND_TAG_KEY bytes of every tag the index holds for
     * user_id, PVG_BACKEND_TAG_KEY bytes each, in no particular order (a
     * key may appear twice); *keys malloc'd (NULL when *n = 0). Callers
     * that test many tags of one user read them once this way. */
    pvg_status (*tags_of_user)(pvg_backend *b, int64_t user_id, unsigned char **keys, size_t *n,
                               pvg_error *err);
    /* ---- cleanup after erasure ---- */
    /* Reclaims the space of deleted rows so that no file keeps them longer
     * than the database allows (SQLite: a checkpoint, and with full a
     * VACUUM of both databases; PostgreSQL: VACUUM, or VACUUM FULL, of the
     * tables holding per-user rows, then CHECKPOINT when permitted). Not
     * inside a transaction. PVG_ERR_BUSY when readers hold old data. */
    pvg_status (*vacuum)(pvg_backend *b, int full, pvg_error *err);
    /* ---- for `store copy` (a store moved between backends) ---- */
    /* Every credential in the order they were created (created_at, then
     * insertion), label set, pointers valid during the callback (`store
     * copy` and `apikey list` read them so). */
    pvg_status (*creds_foreach)(pvg_backend *b, pvg_backend_cred_fn fn, void *ctx, pvg_error *err);
    /* [txn] item_insert with the row id given (sealed records name items by
     * row id, so a copy keeps them). PVG_ERR_EXISTS when the id is taken. */
    pvg_status (*item_insert_at)(pvg_backend *b, int64_t id, const pvg_item *it, int64_t updated_at,
                                 pvg_error *err);
    /* ---- backups (appended in interface 1; may be NULL: no backups) ---- */
    /* Writes a consistent copy of the store's databases into the existing
     * directory dest_dir (file names as in a data dir, 0600; none may exist
     * yet): one point in time across all of them, with no write
     * transaction half-applied. Writers are held off only while the
     * snapshot point is taken, not while the copy runs. The copy holds the
     * wrapped data keys, never a master key (the backend has none). On
     * failure the files it made are removed. */
    pvg_status (*snapshot_to)(pvg_backend *b, const char *dest_dir, pvg_error *err);
    /* ---- assistant conversations (appended in interface 1) ----
     * Table conversations(user_pseudonym, cid, created_at, updated_at,
     * expires_day, sealed): the column user_pseudonym makes user_delete
     * remove them with the shopper. [txn] */
    /* Inserts or replaces the conversation (pseudonym, c->cid). */
    pvg_status (*conv_put)(pvg_backend *b, const unsigned char pseudonym[16],
                           const pvg_backend_conv *c, pvg_error *err);
    /* Hands the one conversation (pseudonym, cid) to fn; NOT_FOUND. */
    pvg_status (*conv_get)(pvg_backend *b, const unsigned char pseudonym[16],
                           const unsigned char cid[16], pvg_backend_conv_fn fn, void *ctx,
                           pvg_error *err);
    /* Every conversation of pseudonym, newest update first. */
    pvg_status (*convs_foreach_user)(pvg_backend *b, const unsigned char pseudonym[16],
                                     pvg_backend_conv_fn fn, void *ctx, pvg_error *err);
    /* Deletes every conversation with expires_day <= day; *n: how many. */
    pvg_status (*convs_sweep)(pvg_backend *b, int64_t day, long long *n, pvg_error *err);
    /* ---- for `store copy`, continued (appended in interface 1): every
     * table a store holds is read back whole, so a copy leaves nothing
     * behind (docs/store.md, "Moving a store"). Iterations hand out
     * pointers valid during the callback only; a callback may call read
     * ops of the same backend. ---- */
    /* Every meta row in key order. */
    pvg_status (*meta_foreach)(pvg_backend *b, pvg_backend_kv_fn fn, void *ctx, pvg_error *err);
    /* Every anonymous count per source (not summed), in (source, item,
     * type) order; anon_put writes one back. */
    pvg_status (*anon_foreach_source)(pvg_backend *b, pvg_backend_anon_source_fn fn, void *ctx,
                                      pvg_error *err);
    /* Every ingest run in the order they were logged (ingest_run_insert
     * writes one back). */
    pvg_status (*ingest_runs_foreach)(pvg_backend *b, pvg_backend_ingest_fn fn, void *ctx,
                                      pvg_error *err);
    /* Every quarantined chunk row in the order it was quarantined. */
    pvg_status (*quarantine_foreach)(pvg_backend *b, pvg_backend_quarantined_fn fn, void *ctx,
                                     pvg_error *err);
    /* [txn] Adds a quarantined row as given (q->row ignored). */
    pvg_status (*quarantine_insert)(pvg_backend *b, const pvg_backend_quarantined *qr,
                                    pvg_error *err);
    /* Every cached DP release (release_cache_put writes one back), in
     * (kind, fingerprint, dataset, params) order. */
    pvg_status (*release_cache_foreach)(pvg_backend *b, pvg_backend_cached_fn fn, void *ctx,
                                        pvg_error *err);
    /* Every conversation of every shopper, in (pseudonym, cid) order. */
    pvg_status (*convs_scan)(pvg_backend *b, pvg_backend_conv_scan_fn fn, void *ctx,
                             pvg_error *err);
    /* ---- the declared catalogue (appended in interface 1; docs/store.md
     * "The declared catalogue") ----
     * Table catalog_text(ext_id PRIMARY KEY, title NOT NULL, description,
     * updated_at): the operator's catalogue text, apart from items (whose
     * title a sale row may set). Only a catalogue load writes it
     * (src/store/catalog.c); imports of events, the events API and
     * item_insert/item_update never do. Not personal: erasure leaves it. */
    /* [txn] Inserts or replaces the entry of ext_id (description may be
     * NULL). */
    pvg_status (*catalog_text_put)(pvg_backend *b, const char *ext_id, const char *title,
                                   const char *description, int64_t updated_at, pvg_error *err);
    /* Every entry in ext_id byte order (memcmp of the UTF-8 bytes, whatever
     * the database's collation); pointers valid during the callback. */
    pvg_status (*catalog_text_foreach)(pvg_backend *b, pvg_backend_catalog_fn fn, void *ctx,
                                       pvg_error *err);

    /* ---- read snapshots (appended in interface 1; both may be NULL: the
     * backend has none, and every read sees the latest commit) ---- */
    /* Opens a read snapshot: until read_end, reads see one committed state,
     * and user_get, cred_get and meta_get may answer from this handle's
     * memo of earlier answers read under the same change counter (so only
     * while nothing they depend on was written, by any handle). Calls nest
     * (only the outermost counts); inside a write transaction it opens
     * nothing. No write, txn_begin or [unit] op until read_end
     * (PVG_ERR_STATE). */
    pvg_status (*read_begin)(pvg_backend *b, pvg_error *err);
    void (*read_end)(pvg_backend *b); /* no-op without a matching read_begin */
};

/* ---- the SQLite backend (src/store/sqlite/) ---- */

/* 1 when dir holds a SQLite store (its main database file exists). */
int pvg_sqlite_backend_exists(const char *dir);
/* Creates the databases of a new store in dir (0600) with the schema.
 * PVG_ERR_EXISTS when one is there. */
pvg_status pvg_sqlite_backend_create(const char *dir, pvg_error *err);
/* Opens the store in dir (upgrading the schema of older stores: new tables
 * only). PVG_ERR_NOT_FOUND when there is none. */
pvg_status pvg_sqlite_backend_open(const char *dir, pvg_backend **out, pvg_error *err);

/* ---- the backend of a data dir (src/store/postgres/pg_select.c) ----
 * A data dir holds a SQLite store, or a file `database` naming the
 * PostgreSQL database and schema of its store (docs/store.md). */

#define PVG_ENV_DATABASE_URL "PRIVGUIDE_DATABASE_URL"
#define PVG_DATABASE_FILE "database"

/* 1 when dir holds a store of either backend. */
int pvg_backend_exists(const char *dir);
/* Creates the store of a new data dir: SQLite when url is NULL or empty,
 * else the schema privguide_<store_id> in the PostgreSQL database at url
 * (the `database` file written 0600 first). */
pvg_status pvg_backend_create(const char *dir, const char *url, const char *store_id,
                              pvg_error *err);
/* Opens the store of dir, whichever backend it uses. */
pvg_status pvg_backend_open(const char *dir, pvg_backend **out, pvg_error *err);
/* Creates or upgrades the schema of dir's store; *from: the version found
 * (0: none), *to: the version now. PVG_ERR_STATE when the store's schema is
 * newer than this code knows. */
pvg_status pvg_backend_migrate(const char *dir, int *from, int *to, pvg_error *err);
/* The backend name of dir's store ("sqlite", "postgresql") and, for
 * PostgreSQL, its URL (NULL otherwise; malloc'd). */
pvg_status pvg_backend_describe(const char *dir, const char **name, char **url, pvg_error *err);

#endif
