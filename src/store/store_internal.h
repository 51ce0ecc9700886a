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

/* A read snapshot around a few lookups (backend.h, read_begin): until
 * pvg_store_read_end the reads see one committed state, and the backend may
 * answer user, credential and meta lookups from its memo of earlier
 * snapshots while the change counter says nothing was written since
 * (SQLite; a backend without snapshots reads as usual). Nests; no writes
 * in between. Every read_begin that returned PVG_OK needs its read_end. */
pvg_status pvg_store_read_begin(pvg_store *s, pvg_error *err) PVG_WARN_UNUSED;
void pvg_store_read_end(pvg_store *s);

/* Runs `reads` inside one read snapshot, again in a fresh snapshot when it
 * (or read_begin) answers PVG_ERR_BUSY (the store saw a write land between
 * two of its reads), at most PVG_STORE_READ_TRIES times in all. `reads`
 * must start from a clean slate each call (it may run more than once) and
 * must not write. Returns its last status (PVG_ERR_BUSY when every try was
 * busy). */
#define PVG_STORE_READ_TRIES 3
typedef pvg_status (*pvg_store_reads_fn)(pvg_store *s, void *ctx, pvg_error *err);
pvg_status pvg_store_read_retry(pvg_store *s, pvg_store_reads_fn reads, void *ctx,
                                pvg_error *err) PVG_WARN_UNUSED;

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

/* 16 memo slots beside the store's policy (parsed once at open; it never
 * changes while the handle is open) for what the access gate derives from
 * its text per purpose, so a request need not parse the policy again; read
 * and written with __atomic builtins. Borrowed; all 0 at open. */
unsigned char *pvg_store_policy_memo(const pvg_store *s);
int64_t pvg_store_audit_unkeyed(const pvg_store *s, unsigned char hash[32]);

/* The keys sealing each shopper's rows in a store-trained model file
 * (model_key.c, src/model/model_file.c): for each of the n pseudonyms
 * (16 bytes each, `stride` bytes apart), keys_out[32*i] = keyed BLAKE2b-256
 * of "pvgmodel-row-key" | seal_id under that shopper's data key, read from
 * the key store (not the cache; no user is created). found[i] = 1 when the
 * shopper has a data key, 0 when it is gone (erased: their rows are
 * shredded). keys_out should be sodium_malloc'd (32*n bytes); the caller
 * wipes it. *n_found (may be NULL): keys found. Errors: PVG_ERR_STATE (no
 * master key), PVG_ERR_CRYPTO (a data key cannot be unwrapped), backend
 * errors; keys_out is wiped on failure. */
pvg_status pvg_store_model_row_keys(pvg_store *s, const unsigned char seal_id[16], size_t n,
                                    const unsigned char *pseudonyms, size_t stride,
                                    unsigned char *keys_out, unsigned char *found, size_t *n_found,
                                    pvg_error *err) PVG_WARN_UNUSED;

/* The key hiding the pseudonyms of a store-trained model file's rows
 * directory (model_key.c): a subkey of the pepper (crypto_kdf, context
 * "pvgmodir"), stable across master-key rotation, never stored. out should
 * be sodium_malloc'd; the caller wipes it. PVG_ERR_STATE without keys. */
pvg_status pvg_store_model_dir_key(pvg_store *s, unsigned char out[32]) PVG_WARN_UNUSED;

/* Every user row in id order as the iterator shows it (pseudonym,
 * consent, created_at), without reading or decrypting any event: for the
 * access gate's batch calls, which check consent per shopper. fn returns 0
 * to go on, non-zero to stop (PVG_ERR_ABORTED). */
pvg_status pvg_store_users_list(pvg_store *s, int (*fn)(void *ctx, const pvg_user_view *u),
                                void *ctx, pvg_error *err);

/* The consent of the user with this pseudonym: PVG_ERR_NOT_FOUND when no
 * such user row exists. */
pvg_status pvg_store_consent_get_pseudonym(pvg_store *s, const unsigned char pseudonym[16],
                                           pvg_consent *out, pvg_error *err);

/* 1 when dir holds a store (a data dir), else 0. */
int pvg_store_dir_is_data_dir(const char *dir);

/* Allocation helpers for strings handed out with pvg_free. */
char *pvg_strdup(const char *s);

#endif
