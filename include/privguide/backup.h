/*
 * privguide/backup.h - backups of a data dir that never hold key material,
 * and restoring them into a new data dir.
 *
 * A backup is one file (format in docs/deploy.md): a manifest, then the
 * store's databases as of one consistent point in time (taken while other
 * processes, a server included, go on writing), store.id, policy.json and
 * the store-trained model files of the data dir. It holds the wrapped
 * per-shopper data keys (encrypted under the master key) and the sealed
 * events, never the key file (pepper, master key): a backup is readable
 * only together with the key file, which is backed up apart (docs/privacy.md
 * says what a backup holds and when an erasure reaches it).
 */
#ifndef PRIVGUIDE_BACKUP_H
#define PRIVGUIDE_BACKUP_H

#include <privguide/common.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default)

/* What a backup or a restore did. */
typedef struct pvg_backup_info {
    char store_id[64];      /* the store's id (names its key file) */
    int files;              /* files in the backup */
    long long bytes;        /* bytes of file content */
    long long suppressed;   /* restore: pseudonyms on the backup's suppression list */
    long long erased_again; /* restore: users or keys erased again (suppressed or keyless) */
} pvg_backup_info;

/* Writes a backup of the store in data_dir: the data (sealed events,
 * catalog, ledger, audit, suppression list, policy, models; no key of any
 * kind) to out_path, and the key store (each shopper's data key, wrapped
 * under the master key) to keys_out_path, both from one snapshot; either
 * may be NULL, not both. Files are created 0600, must not exist, and are
 * written to temporary names and renamed (a failed backup leaves none).
 * The key file is never included. Keeping the two apart is what lets an
 * erasure reach backups: destroying a shopper's data key shreds their
 * records in every data backup; only key-store backups older than the
 * erasure still hold it (keep them no longer than the erasure deadline).
 * Needs no key. Refuses (PVG_ERR_STATE) a data dir that still holds a key
 * file (master.key of old versions: `keys move` first) and a store whose
 * backend cannot take snapshots (a PostgreSQL store: pg_dump). info may
 * be NULL. */
pvg_status pvg_store_backup(const char *data_dir, const char *out_path, const char *keys_out_path,
                            pvg_backup_info *info, pvg_error *err) PVG_WARN_UNUSED;

/* Restores a data backup (backup_path) and a key-store backup (keys_path,
 * of the same store) into new_dir (created 0700; it must not exist, or be
 * an empty directory). Checks each file's integrity hash and manifest
 * before writing its files, then opens the restored store with its key
 * file (key_file, or as pvg_store_open_with finds it; a key file of
 * another store is refused), re-applies the data backup's suppression
 * list, and removes the rows of shoppers whose data key the key store does
 * not hold (erased between the two backups: shredded). On failure what it
 * wrote is removed again. info may be NULL. */
pvg_status pvg_store_restore(const char *backup_path, const char *keys_path, const char *new_dir,
                             const char *key_file, pvg_backup_info *info,
                             pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
