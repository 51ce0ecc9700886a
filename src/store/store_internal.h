/*
 * store_internal.h - what other library modules (DP ledger, audit log,
 * server auth, model training) may use of the store beyond the public API.
 * Not installed; not part of the public interface.
 */
#ifndef PVG_STORE_INTERNAL_H
#define PVG_STORE_INTERNAL_H

#include <privguide/store.h>
#include <sqlite3.h>

/* The store's main SQLite connection (privguide.db), borrowed. Modules
 * create their own tables with CREATE TABLE IF NOT EXISTS on first use and
 * run their writes in their own transactions (BEGIN IMMEDIATE for anything
 * that must not race with another process). busy_timeout is set. */
sqlite3 *pvg_store_sqlite(pvg_store *s);

/* Runs `sql` (no result rows) and maps a failure to a pvg_status with the
 * SQLite message in err. */
pvg_status pvg_store_exec(pvg_store *s, const char *sql, pvg_error *err);

/* Maps a SQLite result code to a pvg_status and fills err with "what: msg". */
pvg_status pvg_store_sqlite_error(pvg_store *s, int rc, const char *what, pvg_error *err);

/* Looks up the user row id for an external id without creating it;
 * PVG_ERR_NOT_FOUND when unknown. */
pvg_status pvg_store_user_id(pvg_store *s, const char *ext_user, int64_t *user_id, pvg_error *err);

/* Convention for modules' own per-user tables: a column named
 * `user_pseudonym` (BLOB, the 16-byte pseudonym) marks rows that belong to
 * a user; pvg_store_user_delete deletes every such row in every table of
 * privguide.db in the same transaction as the user's records. Tables that
 * must survive a deletion (the audit log) name the column differently. */

/* The key sealing the per-shopper sections of model files trained from
 * this store (model_key.c): a subkey of the master key (crypto_kdf,
 * context "pvgmodel"), never stored. out should be sodium_malloc'd; the
 * caller wipes it. PVG_OK, or PVG_ERR_STATE when the store has no master
 * key loaded. */
pvg_status pvg_store_model_key(pvg_store *s, unsigned char out[32]) PVG_WARN_UNUSED;

/* Allocation helpers for strings handed out with pvg_free. */
char *pvg_strdup(const char *s);

#endif
