/*
 * privguide/store.h - the encrypted, policy-bound event store.
 *
 * A data directory holds:
 *   privguide.db   SQLite (WAL): catalog, users (pseudonyms, consent),
 *                  sealed events, anonymous counts, ledgers, audit log
 *   keystore.db    SQLite: each user's data key, wrapped by the master key
 *                  (kept apart so that backups of the data hold no key)
 *   store.id       the store's random id (not secret): names its key file
 *   policy.json    the allow-list of event types and fields, retention
 *
 * The secrets are never in the data dir: the pepper (for pseudonyms) and
 * the master key live together in a key file (0600) outside it, or in the
 * environment (docs/store.md):
 *   1. $PRIVGUIDE_KEYS: the whole text of a key file (never written);
 *   2. else the key file given (options, --key-file) or $PRIVGUIDE_KEY_FILE;
 *   3. else $XDG_CONFIG_HOME/privguide/<store id>.key, or
 *      ~/.config/privguide/<store id>.key when XDG_CONFIG_HOME is unset.
 * $PRIVGUIDE_MASTER_KEY, when set, replaces the key file's master key.
 *
 * Users are known only by pseudonym = keyed BLAKE2b(pepper, external id);
 * the external id is never written. Each user's events are sealed with
 * XChaCha20-Poly1305 under that user's random data key; the associated data
 * binds (pseudonym, record id, format version). Deleting a user destroys
 * the wrapped key and the records (crypto-shredding).
 *
 * A pvg_store is one connection; use it from one thread at a time. Several
 * processes may open the same directory: writes are serialised by SQLite.
 */
#ifndef PRIVGUIDE_STORE_H
#define PRIVGUIDE_STORE_H

#include <privguide/common.h>
#include <privguide/event.h>
#include <privguide/import.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

typedef struct pvg_store pvg_store;

#define PVG_PSEUDONYM_BYTES 16

/* Environment variables read by pvg_store_open when the options leave the
 * corresponding field NULL. */
#define PVG_ENV_MASTER_KEY "PRIVGUIDE_MASTER_KEY"         /* base64 or hex, 32 bytes */
#define PVG_ENV_NEW_MASTER_KEY "PRIVGUIDE_NEW_MASTER_KEY" /* target of a rotation */
#define PVG_ENV_KEY_FILE "PRIVGUIDE_KEY_FILE"             /* path of the key file */
#define PVG_ENV_KEYS "PRIVGUIDE_KEYS"                     /* the key file's whole text */

typedef struct pvg_store_init_options {
    int master_key_in_env;    /* 1: do not write the master key into the key file;
                                 it must come from PRIVGUIDE_MASTER_KEY */
    const char *policy_json;  /* policy text to write; NULL: the default policy */
    const char *key_file;     /* where to create the key file; NULL: $PRIVGUIDE_KEY_FILE
                                 or the per-user default (see above) */
    const char *database_url; /* the PostgreSQL database to keep the store in
                                 (a postgresql:// URL); NULL: $PRIVGUIDE_DATABASE_URL, and
                                 when that is unset or empty, SQLite in the dir */
} pvg_store_init_options;

/* Creates a data dir (mkdir -p, mode 0700) with a new store id, policy file
 * and empty databases, and a new key file (pepper, master key; 0600) outside
 * it (pvg_store_key_file says where). Errors: PVG_ERR_EXISTS when the dir
 * already holds a store or the key file exists, PVG_ERR_IO, PVG_ERR_INVALID
 * (bad policy text, master_key_in_env without the variable set, a key file
 * path inside the data dir, or PRIVGUIDE_KEYS set). opts may be NULL. */
pvg_status pvg_store_init(const char *dir, const pvg_store_init_options *opts,
                          pvg_error *err) PVG_WARN_UNUSED;

typedef struct pvg_store_open_options {
    const char *key_file; /* NULL: $PRIVGUIDE_KEYS, $PRIVGUIDE_KEY_FILE or the default */
} pvg_store_open_options;

/* Opens an existing store. On success *out is new (pvg_store_free).
 * Errors: PVG_ERR_NOT_FOUND (no store there: run `privguide init`; or no
 * key file), PVG_ERR_PERMISSION (key file readable by others),
 * PVG_ERR_CRYPTO (master key does not match the key store),
 * PVG_ERR_CORRUPT, PVG_ERR_INVALID (policy file malformed, err has
 * file:line:column; a key file inside the data dir; a key file of another
 * store), PVG_ERR_STATE (an old data dir that still holds master.key: move
 * it out with pvg_store_keys_move / `privguide keys move`). opts may be
 * NULL; pvg_store_open(d, o, e) is pvg_store_open_with(d, NULL, o, e). */
pvg_status pvg_store_open_with(const char *dir, const pvg_store_open_options *opts, pvg_store **out,
                               pvg_error *err) PVG_WARN_UNUSED;
pvg_status pvg_store_open(const char *dir, pvg_store **out, pvg_error *err) PVG_WARN_UNUSED;

/* Writes into out the absolute path of the key file the store in dir uses
 * (or would use): key_file when not NULL, else $PRIVGUIDE_KEY_FILE, else
 * the default named after the store id. Does not say whether it exists.
 * Errors: PVG_ERR_NOT_FOUND (no store id and no path given), PVG_ERR_INVALID
 * (inside the data dir), PVG_ERR_IO. */
pvg_status pvg_store_key_file(const char *dir, const char *key_file, char *out, size_t cap,
                              pvg_error *err) PVG_WARN_UNUSED;

/* Moves the keys of an old data dir (dir/master.key) out of it: writes the
 * key file (path as for pvg_store_key_file; refuses to overwrite another
 * one), with the store id and, when the audit log has entries, the head up
 * to which it was chained without a key; then overwrites and removes
 * master.key. Safe to rerun after an interruption. moved_to (may be NULL)
 * gets the new path. Errors: PVG_ERR_NOT_FOUND (no store, or no master.key
 * to move), PVG_ERR_EXISTS, PVG_ERR_INVALID, PVG_ERR_IO. Copies of the data
 * dir made before still hold the keys: see docs/store.md. */
pvg_status pvg_store_keys_move(const char *dir, const char *key_file, char *moved_to, size_t cap,
                               pvg_error *err) PVG_WARN_UNUSED;

/* Closes the store (an open transaction is rolled back), wiping every key
 * in memory, and frees it. NULL ok. */
void pvg_store_free(pvg_store *s);
/* The former name of pvg_store_free, kept because it was the documented
 * deallocator of pvg_store_open; new code calls pvg_store_free. */
void pvg_store_close(pvg_store *s);

/* The data dir path (borrowed). */
const char *pvg_store_dir(const pvg_store *s);

/* The store's current time source: time(NULL) unless overridden by
 * pvg_store_set_clock (tests, replays). */
int64_t pvg_store_now(const pvg_store *s);
void pvg_store_set_clock(pvg_store *s, int64_t fixed_now); /* 0 restores the real clock */

/* Computes the pseudonym of an external user id into out[PVG_PSEUDONYM_BYTES]. */
void pvg_store_pseudonym(const pvg_store *s, const char *ext_user, unsigned char *out);

/* ---- ingest ---------------------------------------------------------- */

#define PVG_REASON_MAX 32
typedef struct pvg_reason_count {
    char reason[40];
    long long count;
} pvg_reason_count;

typedef struct pvg_ingest_stats {
    long long read;       /* data rows read = accepted + rejected */
    long long accepted;   /* valid rows: stored events, items, anonymous counts, duplicates,
                             suppressed, no_consent */
    long long rejected;   /* rows refused (reject file), including policy drops of whole events */
    long long stored;     /* new events sealed into the store by this run */
    long long duplicates; /* events recognised as already held */
    long long anonymous;  /* rows without a user id kept as anonymous counts */
    long long suppressed; /* rows of erased shoppers (suppression list), skipped */
    long long no_consent; /* events of a type the policy's purposes collect only under a
                             consent switch the shopper has off, skipped */
    long long items_upserted;
    long long
        dropped_fields[PVG_FIELD_COUNT]; /* fields removed by the policy, per field bit index */
    long long expired_swept;             /* events deleted by the retention sweep run at the end */
    int n_reasons;
    pvg_reason_count reasons[PVG_REASON_MAX];
    long long batches_committed;
    /* store totals after the run */
    long long users;
    long long items;
    long long events;
    double seconds;
} pvg_ingest_stats;

typedef struct pvg_ingest_options {
    pvg_reader_options reader;
    const char *reject_path; /* NULL: no reject file (rejects still counted) */
    long batch_rows;         /* rows per committed transaction; 0: 50,000 */
    int no_sweep;            /* 1: skip the retention sweep at the end */
    /* progress callback, called after each committed batch; may be NULL */
    void (*on_batch)(void *ctx, const pvg_ingest_stats *so_far);
    void *ctx;
} pvg_ingest_options;

/* Streams `path` in format `fmt` into the store: pseudonymises users,
 * applies the policy (its allow-list, fields and retention, and its
 * purposes' consent rule for collection, as pvg_store_events_put: events
 * the shopper's consent does not allow are skipped, counted in
 * stats->no_consent), seals events, upserts items (a sale row's title,
 * category and price are kept for display, but only the format's
 * catalogue rows - records that are items, not events: MovieLens u.item,
 * JSONL "item" records - make catalog items: docs/store.md "Catalog items and the DP
 * domain"), commits in
 * batches (a batch reported by on_batch is durable), then sweeps expired
 * events. Re-running the same file stores nothing twice: an event's record
 * id is a keyed hash of its user, its content and the occurrence number of
 * that exact content within the file (docs/store.md). stats is filled even
 * on failure (what was done up to the error). Errors: those of
 * pvg_reader_open, PVG_ERR_IO, PVG_ERR_NOMEM, PVG_ERR_BUSY. */
pvg_status pvg_store_ingest_file(pvg_store *s, const char *path, pvg_format fmt,
                                 const pvg_ingest_options *opts, pvg_ingest_stats *stats,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* Adds one event for `ext_user` (creating the user on first sight), applying
 * the policy. `dedup_key` (may be NULL) names the event for duplicate
 * detection; NULL derives it from the content. Sets *outcome to 1 stored,
 * 0 duplicate. Errors: PVG_ERR_ERASED (the shopper was erased: on the
 * suppression list), PVG_ERR_POLICY (type not allowed: err says which),
 * PVG_ERR_INVALID (bad field), PVG_ERR_NOT_FOUND (item unknown and
 * `create_item` 0). Runs in its own transaction unless inside
 * pvg_store_begin/commit. */
pvg_status pvg_store_event_put(pvg_store *s, const char *ext_user, const pvg_event *ev,
                               const char *dedup_key, int *outcome, pvg_error *err) PVG_WARN_UNUSED;

/* The most events one call of pvg_store_events_put (one API request) may
 * carry for one shopper. */
#define PVG_EVENTS_PER_USER_MAX 1000

typedef struct pvg_event_in {
    const char *user;       /* external user id (borrowed) */
    const pvg_event *event; /* borrowed */
    const char *dedup_key;  /* may be NULL: derived from the content */
    long index;             /* the caller's number for the event (e.g. its
                               position in a request), used in messages */
} pvg_event_in;

typedef struct pvg_event_out {
    pvg_status status;  /* PVG_OK (stored or duplicate), or why it was refused:
                           PVG_ERR_INVALID, PVG_ERR_POLICY, PVG_ERR_ERASED */
    int stored;         /* 1 stored, 0 duplicate (status PVG_OK) */
    const char *reason; /* static; NULL when taken, else "invalid", "policy",
                           "no_consent" (status PVG_ERR_POLICY), "erased" */
    char message[200];  /* why, when refused (never quotes field values) */
} pvg_event_out;

/* Adds a batch of events (validated and minimised as pvg_store_event_put
 * does), each refused or taken on its own in out[i]. Purpose limitation at
 * collection: an event whose type some purpose of the store's policy uses
 * is taken only when one of those purposes is active for its shopper (a
 * purpose with "consent": null is always active; a shopper not yet known
 * starts from the policy's consent_defaults); else it is refused with
 * PVG_ERR_POLICY, reason "no_consent". Types no purpose names, and every
 * type under a policy without "purposes", are governed by the allow-list
 * alone. The taken ones are the taken ones are
 * committed together. The work (policy, pseudonyms, duplicate look-ups in
 * the duplicate index, sealing) is done before the write transaction,
 * which then only re-checks that the store did not change meanwhile (the
 * change counter; else the preparation is redone) and inserts: the write
 * lock is held for the commit alone. A shopper named by more than
 * PVG_EVENTS_PER_USER_MAX events refuses the whole batch (PVG_ERR_INVALID,
 * err names the index of the first event over the limit). Events of an
 * erased shopper are refused (PVG_ERR_ERASED, reason "erased").
 * *stored / *duplicates (may be NULL) get the counts. Not inside
 * pvg_store_begin/commit (PVG_ERR_STATE). Errors: PVG_ERR_BUSY, PVG_ERR_IO,
 * PVG_ERR_NOMEM (nothing stored). */
pvg_status pvg_store_events_put(pvg_store *s, const pvg_event_in *in, size_t n, pvg_event_out *out,
                                long long *stored, long long *duplicates,
                                pvg_error *err) PVG_WARN_UNUSED;

/* Groups many writes into one transaction. */
pvg_status pvg_store_begin(pvg_store *s, pvg_error *err) PVG_WARN_UNUSED;
pvg_status pvg_store_commit(pvg_store *s, pvg_error *err) PVG_WARN_UNUSED;
void pvg_store_rollback(pvg_store *s);

/* The operator's own put of an item (a catalogue load): inserts or updates
 * it by ext_id; *id_out (may be NULL) gets its row id. A title, category,
 * price >= 0 or attributes (or item->catalog 1) make it a catalog item, a
 * member of the public domain of DP releases (docs/store.md "Catalog items
 * and the DP domain"); a bare id does not. Call it only with the
 * operator's catalogue data, never with what a shopper's event or sale row
 * carries: ingestion (pvg_store_ingest_file's event rows,
 * pvg_store_event(s)_put) writes items through a put that never sets the
 * flag. A price >= 0 is a price seen for the item: it becomes the last
 * price and joins the item's window of recent prices, whose median is the
 * typical price the readers show (pvg_item.price). */
pvg_status pvg_store_item_put(pvg_store *s, const pvg_item *item, int64_t *id_out,
                              pvg_error *err) PVG_WARN_UNUSED;

/* ---- reading ---------------------------------------------------------- */

/* Looks an item up by external id. On success *out is new (pvg_item_free).
 * PVG_ERR_NOT_FOUND if absent. */
pvg_status pvg_store_item_get(pvg_store *s, const char *ext_id, pvg_item **out,
                              pvg_error *err) PVG_WARN_UNUSED;
/* Looks an item up by row id. */
pvg_status pvg_store_item_get_by_id(pvg_store *s, int64_t id, pvg_item **out,
                                    pvg_error *err) PVG_WARN_UNUSED;
void pvg_item_free(pvg_item *item);

/* Calls fn for every catalog item in row-id order; the item is borrowed for
 * the call. fn returns 0 to go on, non-zero to stop (returned as
 * PVG_ERR_ABORTED). */
pvg_status pvg_store_items_foreach(pvg_store *s, int (*fn)(void *ctx, const pvg_item *item),
                                   void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* What the iterator shows of a user: never the external id. */
typedef struct pvg_user_view {
    int64_t user_id; /* stable row id */
    unsigned char pseudonym[PVG_PSEUDONYM_BYTES];
    int consent_personalization;
    int consent_analytics;
    int64_t created_at;
} pvg_user_view;

enum {
    PVG_FOREACH_REQUIRE_ANALYTICS = 1u << 0,      /* skip users without analytics consent */
    PVG_FOREACH_REQUIRE_PERSONALIZATION = 1u << 1 /* skip users without personalisation consent */
};

/* Decrypts and hands every user's events to fn, one user at a time, events
 * in timestamp order. Arrays and strings are borrowed for the call. fn
 * returns 0 to go on, non-zero to stop (returned as PVG_ERR_ABORTED).
 * A chunk of records that fails authentication, or a replayed copy of one,
 * is skipped: the user is handed the rest of their events, the chunk is
 * counted in pvg_store_read_stats, and the run goes on (never fails for
 * it). Errors: PVG_ERR_CORRUPT (an authenticated record that does not
 * decode), PVG_ERR_IO. */
typedef int (*pvg_user_events_fn)(void *ctx, const pvg_user_view *user, const pvg_event *events,
                                  size_t n_events);
pvg_status pvg_store_foreach_user(pvg_store *s, unsigned flags, pvg_user_events_fn fn, void *ctx,
                                  pvg_error *err) PVG_WARN_UNUSED;

/* The same for one user by external id; PVG_ERR_NOT_FOUND if unknown. */
pvg_status pvg_store_user_events(pvg_store *s, const char *ext_user, pvg_user_events_fn fn,
                                 void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* ---- the declared catalogue (docs/store.md "The declared catalogue") ----
 * The operator's own catalogue text, kept apart from the items' titles:
 * an import of transactions (Online Retail's Description) writes each sale
 * row's text into the item's title, so one shopper's row can rename an
 * item, and that title is data that depends on shoppers. The declared text
 * is set only by a catalogue load (these calls, `privguide catalog
 * import`); imports of events, pvg_store_event(s)_put and
 * pvg_store_item_put never write it. It is public (not personal; erasure
 * leaves it) and is what DP training uses as public text (docs/models.md
 * "A prior from the catalogue's text"). */

#define PVG_CATALOG_TITLE_MAX 1024        /* bytes of a declared title */
#define PVG_CATALOG_DESCRIPTION_MAX 16384 /* bytes of a declared description */

typedef struct pvg_catalog_entry {
    const char *ext_id;      /* the shop's item id: 1..PVG_ID_MAX bytes, no control characters */
    const char *title;       /* 1..PVG_CATALOG_TITLE_MAX bytes of UTF-8, no control characters */
    const char *description; /* NULL, or up to PVG_CATALOG_DESCRIPTION_MAX bytes of UTF-8
                                without control characters other than tab */
} pvg_catalog_entry;

/* Declares n entries (borrowed) in one transaction: each replaces the
 * declared text of its id (the last one wins when an id repeats) and
 * upserts the item as a catalog item with that title (items.title is the
 * display title, which a later sale row may overwrite; the declared text
 * stays). Every entry is checked first: an invalid one declares nothing
 * (PVG_ERR_INVALID, err names the entry's index and field). Not inside
 * pvg_store_begin/commit (PVG_ERR_STATE). Errors: PVG_ERR_BUSY, PVG_ERR_IO,
 * PVG_ERR_NOMEM. */
pvg_status pvg_store_catalog_declare(pvg_store *s, const pvg_catalog_entry *entries, size_t n,
                                     pvg_error *err) PVG_WARN_UNUSED;

typedef enum pvg_catalog_format {
    PVG_CATALOG_AUTO = 0, /* JSONL when the first non-blank line starts with '{', else TSV */
    PVG_CATALOG_TSV,      /* id<TAB>title[<TAB>description] per line */
    PVG_CATALOG_JSONL     /* {"id": "..", "title": "..", "description": ".."} per line */
} pvg_catalog_format;

typedef struct pvg_catalog_import_stats {
    long long lines;    /* lines read, blank ones included */
    long long declared; /* entries declared (committed; an id given twice counts twice) */
} pvg_catalog_import_stats;

/* Reads a catalogue file (docs/store.md "The declared catalogue") and declares
 * its entries, committed in batches of 1000 lines (fewer when
 * they hold more than 8 MiB). Blank lines are
 * skipped; ids and titles are trimmed of surrounding spaces. The first bad
 * line stops the import: what was accepted before it is committed (and
 * stays: a rerun after the fix declares the same text again), and err
 * says path:line and the field ("id", "title", "description", or "line")
 * and what was expected, never quoting the line's text. stats (may be
 * NULL) is filled even on failure. Errors: PVG_ERR_INVALID (a bad line),
 * PVG_ERR_NOT_FOUND / PVG_ERR_IO (the file), PVG_ERR_STATE (inside
 * pvg_store_begin/commit), PVG_ERR_BUSY, PVG_ERR_NOMEM. */
pvg_status pvg_store_catalog_import(pvg_store *s, const char *path, pvg_catalog_format fmt,
                                    pvg_catalog_import_stats *stats,
                                    pvg_error *err) PVG_WARN_UNUSED;

/* Calls fn for every declared entry in id byte order (memcmp); the entry is
 * borrowed for the call. fn returns 0 to go on, non-zero to stop (returned
 * as PVG_ERR_ABORTED). */
pvg_status pvg_store_catalog_foreach(pvg_store *s,
                                     int (*fn)(void *ctx, const pvg_catalog_entry *entry),
                                     void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* Which declared text pvg_store_catalog_texts returns. */
typedef enum pvg_catalog_field {
    PVG_CATALOG_FIELD_TITLE = 0,      /* the declared title */
    PVG_CATALOG_FIELD_DESCRIPTION = 1 /* the declared description (none: NULL) */
} pvg_catalog_field;

/* The declared text of ids[0..n) (borrowed), the field chosen by field:
 * on success *texts is a new array of n strings (pvg_catalog_titles_free),
 * texts[i] new or NULL when ids[i] has no declared entry or, for the
 * description, an entry without one (or ""); *n_found (may be NULL) counts
 * the non-NULL ones. Only declared text is returned, never a title a sale
 * row set. Errors: PVG_ERR_INVALID (a NULL argument or id, named by index;
 * field not one of the enum's), PVG_ERR_NOMEM, the store's read errors. */
pvg_status pvg_store_catalog_texts(pvg_store *s, const char *const *ids, size_t n,
                                   pvg_catalog_field field, char ***texts, size_t *n_found,
                                   pvg_error *err) PVG_WARN_UNUSED;

/* pvg_store_catalog_texts with PVG_CATALOG_FIELD_TITLE. */
pvg_status pvg_store_catalog_titles(pvg_store *s, const char *const *ids, size_t n, char ***titles,
                                    size_t *n_found, pvg_error *err) PVG_WARN_UNUSED;

/* Frees an array of pvg_store_catalog_texts or _titles (n its length);
 * NULL is fine. */
void pvg_catalog_titles_free(char **titles, size_t n);

/* Non-personal anonymous counts per item and event type (rows of sources
 * without a user id). fn gets (item row id, type, count, quantity sum). */
pvg_status pvg_store_anonymous_foreach(pvg_store *s,
                                       int (*fn)(void *ctx, int64_t item_id, pvg_event_type type,
                                                 long long count, double quantity),
                                       void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* What the readers of a store handle (foreach, user events, export, the
 * write path's duplicate check) skipped since it was opened or last reset.
 * A chunk that fails authentication (tampered, moved, its expiry or count
 * edited, or sealed under a destroyed key) or is malformed is skipped and
 * counted, as is a second copy of a chunk id (a replayed row); the rest of
 * the store stays readable. `privguide store check` finds and quarantines
 * such chunks. */
typedef struct pvg_store_read_stats {
    long long chunks_unreadable; /* failed authentication or malformed */
    long long chunks_duplicate;  /* a chunk id met twice in one user's chunks */
    long long chunks_legacy;     /* format-1 chunks read (expiry not authenticated) */
    int64_t last_user_id;        /* user row of the last chunk skipped (0: none) */
    char last[128];              /* "user row N: chunk <id>: <reason>", "" when none */
} pvg_store_read_stats;
void pvg_store_read_stats_get(const pvg_store *s, pvg_store_read_stats *out);
void pvg_store_read_stats_reset(pvg_store *s);

/* ---- checking the store ---- */

/* What pvg_store_check found (and did). Every chunk row is examined. */
typedef struct pvg_store_check_report {
    long long users, chunks; /* examined */
    long long unreadable;    /* fails authentication under its user's key, or malformed */
    long long duplicate;     /* a second row with a chunk id an authentic row has (replayed) */
    long long orphaned;      /* its user row is gone (e.g. written by a stale writer) */
    long long keyless;       /* its user row is there but its wrapped key is not */
    long long legacy;        /* format 1: expiry and count not authenticated */
    long long quarantined;   /* moved to the quarantine by this run */
    long long upgraded;      /* format-1 chunks rewritten in the current format by this run */
    long long in_quarantine; /* rows in the quarantine after the run */
    int cid_index;           /* 1: the unique index on chunk ids is in place */
} pvg_store_check_report;

enum {
    PVG_CHECK_QUARANTINE = 1u << 0, /* move every problem chunk to the quarantine */
    PVG_CHECK_UPGRADE = 1u << 1     /* rewrite users' format-1 chunks in the current format */
};

/* Called once per problem chunk: its user row, chunk row, chunk id (hex,
 * "?" when malformed), the problem ("failed authentication", "malformed",
 * "duplicate chunk id", "user row missing", "data key missing") and whether
 * it was quarantined. Strings borrowed for the call. */
typedef void (*pvg_store_check_fn)(void *ctx, int64_t user_id, int64_t row, const char *chunk,
                                   const char *problem, int quarantined);

/* Examines every chunk row of the store (decrypting each under its user's
 * key) and fills *out; fn (may be NULL) hears of each problem. With
 * PVG_CHECK_QUARANTINE, problem chunks are moved, in one transaction, into
 * the quarantine (kept sealed as they were; removed with their user on
 * erasure), out of every reader's way, and the unique chunk-id index is
 * built if replayed rows had kept it from being. With PVG_CHECK_UPGRADE,
 * the chunks of each user holding format-1 chunks (and no problem chunk)
 * are rewritten in the current format. Errors: PVG_ERR_IO, PVG_ERR_BUSY. */
pvg_status pvg_store_check(pvg_store *s, unsigned flags, pvg_store_check_fn fn, void *ctx,
                           pvg_store_check_report *out, pvg_error *err) PVG_WARN_UNUSED;

typedef struct pvg_store_counts {
    long long users, items, events, anonymous_rows, wrapped_keys;
} pvg_store_counts;
pvg_status pvg_store_counts_get(pvg_store *s, pvg_store_counts *out,
                                pvg_error *err) PVG_WARN_UNUSED;

/* ---- backends: PostgreSQL or SQLite (docs/store.md) ---- */

/* Creates or upgrades the schema of the store in dir (either backend);
 * *from: the schema version found (0: none), *to: the version now.
 * PVG_ERR_STATE when the store's schema is newer than this library knows
 * (nothing is changed), PVG_ERR_NOT_FOUND, PVG_ERR_IO. */
pvg_status pvg_store_migrate(const char *dir, int *from, int *to, pvg_error *err) PVG_WARN_UNUSED;

typedef struct pvg_store_copy_report {
    long long users, chunks, events, releases, audit_entries;
    long long chunks_left;  /* chunk rows without a user row (unreadable): not copied */
    long long digests;      /* users whose digests matched on both sides */
    const char *to_backend; /* "sqlite" or "postgresql" (static) */
    long long conversations, quarantined, ingest_runs, cached_releases;
    long long meta_rows; /* store-wide settings: monitor alerts, suspensions... */
} pvg_store_copy_report;

/* Copies the store of from_dir into a new data dir to_dir: to the
 * PostgreSQL database at to_url, or SQLite when to_url is NULL. The store
 * id and policy go along, so the same key file opens the copy. Copied: every
 * table the store holds (docs/store.md, "Moving a store"): users (new row
 * ids), wrapped keys, sealed chunks, catalog (same row ids), anonymous
 * counts (per source), suppression list, credentials, ledger and audit log
 * (same sequence and MACs), the assistant's conversations, the quarantine,
 * the ingest log, the DP release cache and the meta settings (access
 * monitoring's alerts and suspensions); not the duplicate index (rebuilt
 * on the target's first open), the change counter (the target's own) nor
 * files of the data dir besides store.id and policy.json. Verified before
 * returning: counts, a digest per user (consent, key, sealed chunks,
 * conversations, quarantined rows), a digest per table of everything else
 * and the audit head equal on both sides; PVG_ERR_CORRUPT otherwise. No key
 * is needed. */
pvg_status pvg_store_copy(const char *from_dir, const char *to_dir, const char *to_url,
                          pvg_store_copy_report *r, pvg_error *err) PVG_WARN_UNUSED;

/* Reclaims the space of deleted rows after an erasure (PostgreSQL: VACUUM
 * of the tables holding per-user rows, VACUUM FULL with full, then
 * CHECKPOINT when the role may; SQLite: WAL checkpoint, VACUUM with full).
 * Not inside a transaction. PVG_ERR_BUSY when readers hold old rows. */
pvg_status pvg_store_vacuum(pvg_store *s, int full, pvg_error *err) PVG_WARN_UNUSED;

/* ---- the user's rights ------------------------------------------------ */

/* Everything held about a user, as a JSON document (new string; free with
 * pvg_free): {"user", "pseudonym", "created_at", "consent":{...},
 * "purposes":[...], "events":[...]}. PVG_ERR_NOT_FOUND when unknown. */
pvg_status pvg_store_user_export(pvg_store *s, const char *ext_user, char **json_out,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* Crypto-shreds a user: destroys the wrapped data key and every record with
 * secure_delete on, then checkpoints and truncates both WALs, so no file in
 * the data dir keeps the key or a record; then removes the user from every
 * store-trained model file of the data dir (pvg_model_dir_erase_user; an
 * error there means the store part is done but a model still holds them).
 * PVG_ERR_NOT_FOUND when unknown. */
pvg_status pvg_store_user_delete(pvg_store *s, const char *ext_user,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* Flags of pvg_store_user_erase. */
enum {
    PVG_ERASE_ALLOW_RETURN = 1u << 0 /* do not put the shopper on the suppression list */
};

/* pvg_store_user_delete with flags. Without PVG_ERASE_ALLOW_RETURN the
 * shopper's pseudonym first goes on the suppression list (durably, before
 * the key is destroyed): from then on imports skip their rows (counted as
 * `suppressed`), and events, consent changes and tokens for them are
 * refused with PVG_ERR_ERASED (docs/privacy.md). pvg_store_user_delete is
 * pvg_store_user_erase with flags 0. */
pvg_status pvg_store_user_erase(pvg_store *s, const char *ext_user, unsigned flags,
                                pvg_error *err) PVG_WARN_UNUSED;

/* *suppressed = 1 when the shopper is on the suppression list (erased and
 * not allowed to return). */
pvg_status pvg_store_user_suppressed(pvg_store *s, const char *ext_user, int *suppressed,
                                     pvg_error *err) PVG_WARN_UNUSED;

typedef struct pvg_consent {
    int personalization;
    int analytics;
} pvg_consent;

/* Reads / writes a user's consent. get: PVG_ERR_NOT_FOUND when unknown.
 * set: creates the user when unknown (consent may precede any event);
 * PVG_ERR_ERASED for a shopper on the suppression list. */
pvg_status pvg_store_consent_get(pvg_store *s, const char *ext_user, pvg_consent *out,
                                 pvg_error *err) PVG_WARN_UNUSED;
pvg_status pvg_store_consent_set(pvg_store *s, const char *ext_user, const pvg_consent *c,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* 1 when the user is known, 0 when not, negative pvg_status on error. */
int pvg_store_user_exists(pvg_store *s, const char *ext_user, pvg_error *err) PVG_WARN_UNUSED;

/* ---- keys and retention ---------------------------------------------- */

/* Rewraps every data key under a new master key without touching events.
 * Safe to interrupt: the key file keeps both keys until every wrapped key
 * is under the new one; a rerun finishes the job. With the master key in
 * the environment, the new key must be in PRIVGUIDE_NEW_MASTER_KEY.
 * *rewrapped (may be NULL) gets the number of keys rewrapped. */
pvg_status pvg_store_keys_rotate(pvg_store *s, long long *rewrapped,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* Deletes every event whose retention has passed at pvg_store_now().
 * *deleted (may be NULL) gets the count. */
pvg_status pvg_store_retention_sweep(pvg_store *s, long long *deleted,
                                     pvg_error *err) PVG_WARN_UNUSED;

/* The policy file's text (borrowed) and helpers derived from it. */
const char *pvg_store_policy_json(const pvg_store *s);
/* 1 if the policy keeps events of this type. */
int pvg_store_policy_allows(const pvg_store *s, pvg_event_type type);

/* ---- assistant conversations (src/store/conversation.c) ----
 * A conversation of an identified shopper is personal data: its state (a
 * JSON text the assistant writes) is sealed under the shopper's data key
 * with XChaCha20-Poly1305, the associated data binding (pseudonym,
 * conversation id, created_at, expiry day); it goes with the shopper's
 * erasure (and their key: crypto-shredding), is in their export, and
 * expires `conversations.retention_days` after its last turn (policy file;
 * default 30), deleted by pvg_store_retention_sweep. */

#define PVG_CONVERSATION_ID_BYTES 16 /* ids are shown as 32 lower-case hex digits */

/* The days a conversation is kept after its last turn (policy). */
int pvg_store_conversation_retention_days(const pvg_store *s);

/* Writes (creates or replaces) conversation id_hex of ext_user with the
 * state text json, created at created_at (kept from the first write), now
 * as its update time. Creates the shopper when unknown (their first
 * contact may be a question). Errors: PVG_ERR_INVALID (id not 32 hex
 * digits, empty user), PVG_ERR_ERASED (suppression list), the store's. */
pvg_status pvg_store_conversation_put(pvg_store *s, const char *ext_user, const char *id_hex,
                                      int64_t created_at, const char *json,
                                      pvg_error *err) PVG_WARN_UNUSED;

/* One conversation as read back; strings borrowed for the callback. */
typedef struct pvg_conversation_view {
    const char *id; /* 32 hex digits */
    int64_t created_at, updated_at;
    int64_t expires_at; /* seconds since the epoch: the start of its expiry day */
    const char *json;   /* the state text */
} pvg_conversation_view;

/* Hands conversation id_hex of ext_user to fn. PVG_ERR_NOT_FOUND when the
 * shopper or the conversation is unknown (or expired: its expiry day has
 * come), PVG_ERR_CRYPTO when it fails authentication. */
pvg_status pvg_store_conversation_get(pvg_store *s, const char *ext_user, const char *id_hex,
                                      void (*fn)(void *ctx, const pvg_conversation_view *c),
                                      void *ctx, pvg_error *err) PVG_WARN_UNUSED;

/* Hands every readable conversation of ext_user to fn, newest first (one
 * that fails authentication is skipped and counted in *unreadable, may be
 * NULL). PVG_ERR_NOT_FOUND when the shopper is unknown. */
pvg_status pvg_store_conversations_foreach(pvg_store *s, const char *ext_user,
                                           void (*fn)(void *ctx, const pvg_conversation_view *c),
                                           void *ctx, long long *unreadable,
                                           pvg_error *err) PVG_WARN_UNUSED;

/* Frees memory returned by the library (strings, buffers). NULL ok. */
void pvg_free(void *p);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
