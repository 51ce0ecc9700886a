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
    long long erased_again; /* restore: of those, users or keys still present, erased again */
} pvg_backup_info;

/* Writes a backup of the store in data_dir to out_path (created 0600; it
 * must not exist; written to a temporary name and renamed, so a failed
 * backup leaves no file). Needs no key. Refuses (PVG_ERR_STATE) a data dir
 * that still holds a key file (master.key of old versions: `keys move`
 * first) and a store whose backend cannot take snapshots (a PostgreSQL
 * store: back it up with pg_dump). info may be NULL. */
pvg_status pvg_store_backup(const char *data_dir, const char *out_path, pvg_backup_info *info,
                            pvg_error *err) PVG_WARN_UNUSED;

/* Restores the backup in backup_path into new_dir (created 0700; it must
 * not exist, or be an empty directory), checks the file's integrity hash
 * first, then opens the restored store with its key file (key_file, or as
 * pvg_store_open_with finds it; a key file of another store is refused)
 * and re-applies the backup's suppression list: a shopper on it whose user
 * row, data key or model rows are still present (an erasure that was under
 * way when the backup was taken) is erased again. On failure new_dir is
 * left as it is, for inspection; it is not a usable store. info may be
 * NULL. */
pvg_status pvg_store_restore(const char *backup_path, const char *new_dir, const char *key_file,
                             pvg_backup_info *info, pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
