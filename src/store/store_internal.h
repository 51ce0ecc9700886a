/*
 * store_internal.h - what other library modules (DP ledger, audit log,
 * server auth, model training) may use of the store beyond the public API.
 * Not installed; not part of the public interface.
 */
#ifndef PVG_STORE_INTERNAL_H
#define PVG_STORE_INTERNAL_H

#include <privguide/store.h>

#include "store/backend.h"

/* The store's backend (src/store/backend.h), borrowed. Modules keep their
 * data through its ops (credentials, ledger, audit log, release cache);
 * nothing outside src/store/sqlite/ speaks SQL. */
pvg_backend *pvg_store_backend(pvg_store *s);

/* Commits of this handle survive a crash of the process but not of the
 * machine (used by the server's audit writer, which batches its commits). */
pvg_status pvg_store_relax_durability(pvg_store *s, pvg_error *err);

/* The store-wide change counter (backend.h, changes_get): monotonic, bumped
 * by every committed write that changes users, keys, consent or chunks.
 * Caches of per-user state compare it to the value they were filled at. */
pvg_status pvg_store_changes(pvg_store *s, int64_t *changes, pvg_error *err);

/* Looks up the user row id for an external id without creating it;
 * PVG_ERR_NOT_FOUND when unknown. */
pvg_status pvg_store_user_id(pvg_store *s, const char *ext_user, int64_t *user_id, pvg_error *err);

/* Convention for per-user rows of other modules: a column (or field) named
 * `user_pseudonym` (the 16-byte pseudonym) marks rows that belong to a
 * user; the backend's user_delete deletes every such row in the same
 * transaction as the user's records. Data that must survive a deletion
 * (the audit log) names it differently. */

/* The audit chain's MAC key (32 bytes, borrowed; derived from the pepper in
 * the key file, so only a holder of the key file can extend or re-chain the
 * log), and, for a store whose keys were moved out of an old data dir, the
 * last entry chained without a key (its seq, and its hash into hash; 0 when
 * every entry must carry a MAC). */
const unsigned char *pvg_store_audit_key(const pvg_store *s);
int64_t pvg_store_audit_unkeyed(const pvg_store *s, unsigned char hash[32]);

/* The key sealing the per-shopper sections of model files trained from
 * this store (model_key.c): a subkey of the master key (crypto_kdf,
 * context "pvgmodel"), never stored. out should be sodium_malloc'd; the
 * caller wipes it. PVG_OK, or PVG_ERR_STATE when the store has no master
 * key loaded. */
pvg_status pvg_store_model_key(pvg_store *s, unsigned char out[32]) PVG_WARN_UNUSED;

/* Allocation helpers for strings handed out with pvg_free. */
char *pvg_strdup(const char *s);

#endif
