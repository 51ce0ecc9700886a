/*
 * backup.c - backups of a data dir without key material, and restores
 * (include/privguide/backup.h; the file format is in docs/deploy.md).
 *
 * File: "PVGBACKUP1\n", a u64 (little-endian) manifest length, the
 * manifest (JSON: format, created_at, store_id, backend, files [{name,
 * size}]), the files' bytes in manifest order, then the keyless BLAKE2b-256
 * of every byte before it (against damage, not against tampering: a backup
 * is to be kept where only the operator can write).
 */
#include "store/datafile.h"
#include "store/backend.h"
#include "store/store_priv.h"

#include <privguide/backup.h>
#include <privguide/model.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BK_MAGIC "PVGBACKUP1\n"
#define BK_MAGIC_LEN 11
#define BK_HASH 32
#define BK_MAX_FILES 256
#define BK_MANIFEST_MAX (1u << 20)
#define BK_MODEL_MAGIC "PVGMODL" /* the first 8 bytes (with the NUL) of a model file */

typedef struct bk_file {
    char name[256]; /* relative to the data dir */
    char src[4096]; /* where the bytes are read from */
    long long size;
} bk_file;

/* A name a backup may carry: [A-Za-z0-9._-], optionally under the model
 * sub-directory, never a dot-name, never a key file. */
static int name_ok(const char *name)
{
    const char *base = name;
    size_t sl = strlen(PVG_MODEL_SUBDIR);
    if (strncmp(name, PVG_MODEL_SUBDIR, sl) == 0 && name[sl] == '/') base = name + sl + 1;
    size_t n = strlen(base);
    if (n == 0 || n > 200 || base[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = base[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    if (strcmp(base, PVG_LEGACY_KEY_FILE) == 0) return 0;
    return !(n >= 4 && strcmp(base + n - 4, ".key") == 0);
}

static int is_model_file(const char *path, long long *size)
{
    struct stat sb;
    if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 8) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    char mg[8];
    int ok = fd >= 0 && pread(fd, mg, 8, 0) == 8 && memcmp(mg, BK_MODEL_MAGIC, 8) == 0;
    if (fd >= 0) close(fd);
    *size = sb.st_size;
    return ok;
}

/* Adds the model files of dir (sub: "" or the model sub-directory). */
static pvg_status add_models(const char *data_dir, const char *sub, bk_file *files, int *n,
                             pvg_error *err)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s%s%s", data_dir, *sub ? "/" : "", sub);
    DIR *d = opendir(dir);
    if (!d) return PVG_OK; /* no model sub-directory */
    struct dirent *de;
    pvg_status st = PVG_OK;
    while (st == PVG_OK && (de = readdir(d)) != NULL) {
        char name[512], path[4096 + 512];
        long long size;
        snprintf(name, sizeof name, "%s%s%s", sub, *sub ? "/" : "", de->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        /* temporary files of a model being written (*.tmp.XXXXXX) are skipped */
        if (!name_ok(name) || strstr(de->d_name, ".tmp.") || !is_model_file(path, &size)) continue;
        if (*n == BK_MAX_FILES) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, dir, 0, 0, -1,
                                  "more than %d files to back up", BK_MAX_FILES);
            break;
        }
        if (snprintf(files[*n].name, sizeof files[*n].name, "%s", name) >=
                (int)sizeof files[*n].name ||
            snprintf(files[*n].src, sizeof files[*n].src, "%s", path) >= (int)sizeof files[*n].src)
            continue; /* longer than name_ok allows: not reached */
        files[*n].size = size;
        (*n)++;
    }
    closedir(d);
    return st;
}

static pvg_status write_all(int fd, const void *buf, size_t len, crypto_generichash_state *h,
                            const char *path, pvg_error *err)
{
    const unsigned char *p = buf;
    if (h) crypto_generichash_update(h, p, len);
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "write failed: %s",
                                    strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    return PVG_OK;
}

/* Appends the file src (exactly `size` bytes, or an error) to fd. */
static pvg_status append_file(int fd, const bk_file *f, crypto_generichash_state *h,
                              const char *out, pvg_error *err)
{
    int in = open(f->src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return pvg_error_set_at(err, PVG_ERR_IO, f->src, 0, 0, -1, "cannot open: %s",
                                strerror(errno));
    unsigned char buf[1 << 16];
    long long left = f->size;
    pvg_status st = PVG_OK;
    while (st == PVG_OK && left > 0) {
        ssize_t r = read(in, buf, left < (long long)sizeof buf ? (size_t)left : sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            st = pvg_error_set_at(err, PVG_ERR_IO, f->src, 0, 0, f->size - left,
                                  "changed while being backed up (expected %lld bytes)", f->size);
            break;
        }
        st = write_all(fd, buf, (size_t)r, h, out, err);
        left -= r;
    }
    close(in);
    return st;
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Writes the files whose kind is `kind` ("data" or "keys") into out_path
 * (via a temporary name): magic, manifest, contents, integrity hash. */
static pvg_status write_backup(const char *out_path, const char *kind, const char *sid,
                               const bk_file *files, const int *is_keys, int n, int *written,
                               long long *bytes_out, pvg_error *err)
{
    int want_keys = strcmp(kind, "keys") == 0;
    char part[4096];
    if (snprintf(part, sizeof part, "%s.part.XXXXXX", out_path) >= (int)sizeof part)
        return pvg_error_set_at(err, PVG_ERR_INVALID, out_path, 0, 0, -1, "path too long");
    pvg_status st = PVG_OK;
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        if (is_keys[i] == want_keys || strcmp(files[i].name, PVG_STORE_ID_FILE) == 0)
            json_array_append_new(arr, json_pack("{s:s,s:I}", "name", files[i].name, "size",
                                                 (json_int_t)files[i].size));
    json_t *m = json_pack(
        "{s:i,s:I,s:s,s:s,s:s,s:s,s:o}", "format", 2, "created_at", (json_int_t)time(NULL),
        "store_id", sid, "backend", "sqlite", "kind", kind, "holds",
        want_keys ? "the key store: each shopper's data key, wrapped under the master key "
                    "(never the key file); keep it no longer than the erasure deadline"
                  : "the data: sealed events, catalog, ledger, audit, suppression list, "
                    "policy, models; no key of any kind",
        "files", arr);
    char *man = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    if (!man) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    mode_t old = umask(077);
    int fd = mkstemp(part);
    umask(old);
    if (fd < 0) {
        free(man);
        return pvg_error_set_at(err, PVG_ERR_IO, part, 0, 0, -1, "cannot create: %s",
                                strerror(errno));
    }
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, BK_HASH);
    unsigned char len8[8];
    put_u64(len8, strlen(man));
    st = write_all(fd, BK_MAGIC, BK_MAGIC_LEN, &h, part, err);
    if (st == PVG_OK) st = write_all(fd, len8, 8, &h, part, err);
    if (st == PVG_OK) st = write_all(fd, man, strlen(man), &h, part, err);
    long long bytes = 0;
    int count = 0;
    for (int i = 0; st == PVG_OK && i < n; i++) {
        if (!(is_keys[i] == want_keys || strcmp(files[i].name, PVG_STORE_ID_FILE) == 0)) continue;
        st = append_file(fd, &files[i], &h, part, err);
        bytes += files[i].size;
        count++;
    }
    if (st == PVG_OK) {
        unsigned char sum[BK_HASH];
        crypto_generichash_final(&h, sum, BK_HASH);
        st = write_all(fd, sum, BK_HASH, NULL, part, err);
    }
    if (st == PVG_OK && fsync(fd) != 0)
        st = pvg_error_set_at(err, PVG_ERR_IO, part, 0, 0, -1, "fsync: %s", strerror(errno));
    close(fd);
    if (st == PVG_OK && rename(part, out_path) != 0)
        st = pvg_error_set_at(err, PVG_ERR_IO, out_path, 0, 0, -1, "cannot rename into place: %s",
                              strerror(errno));
    if (st != PVG_OK) unlink(part);
    free(man);
    *written = count;
    *bytes_out = bytes;
    return st;
}

pvg_status pvg_store_backup(const char *data_dir, const char *out_path, const char *keys_out_path,
                            pvg_backup_info *info, pvg_error *err)
{
    if (info) memset(info, 0, sizeof *info);
    if (!data_dir || (!out_path && !keys_out_path))
        return pvg_error_set(err, PVG_ERR_INVALID, "backup: NULL data dir or output");
    if (out_path && keys_out_path && strcmp(out_path, keys_out_path) == 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "backup: the data and the key store go to two different files");
    pvg_status st = pvg_init();
    if (st != PVG_OK) return pvg_error_set(err, st, "the system random generator is unavailable");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", data_dir, PVG_LEGACY_KEY_FILE);
    if (access(path, F_OK) == 0)
        return pvg_error_set_at(
            err, PVG_ERR_STATE, path, 0, 0, -1,
            "the keys are inside the data dir and a backup must never hold them: move "
            "them out first with `privguide keys move --key-file PATH`");
    if (!pvg_sqlite_backend_exists(data_dir))
        return pvg_error_set_at(
            err, PVG_ERR_NOT_FOUND, data_dir, 0, 0, -1,
            "no SQLite privguide store here (a PostgreSQL store is backed up with "
            "pg_dump: docs/deploy.md)");
    const char *outs[2] = {out_path, keys_out_path};
    for (int i = 0; i < 2; i++)
        if (outs[i] && access(outs[i], F_OK) == 0)
            return pvg_error_set_at(err, PVG_ERR_EXISTS, outs[i], 0, 0, -1,
                                    "exists already; give a new file name");
    char sid[2 * PVG_STORE_ID_BYTES + 1];
    st = pvg_keys_store_id(data_dir, 0, sid, err);
    if (st != PVG_OK) return st;

    pvg_backend *be = NULL;
    st = pvg_sqlite_backend_open(data_dir, &be, err);
    if (st != PVG_OK) return st;
    if (!be->ops->snapshot_to) {
        be->ops->close(be);
        return pvg_error_set_at(
            err, PVG_ERR_STATE, data_dir, 0, 0, -1,
            "the %s backend cannot take snapshots: back its database up with its own "
            "tool (for PostgreSQL, pg_dump; docs/deploy.md)",
            be->ops->name);
    }
    /* one snapshot (one point in time for data and keys), in a private
     * directory next to the first output */
    const char *first = out_path ? out_path : keys_out_path;
    char snap[4096];
    if (snprintf(snap, sizeof snap, "%s.snap.XXXXXX", first) >= (int)sizeof snap) {
        be->ops->close(be);
        return pvg_error_set_at(err, PVG_ERR_INVALID, first, 0, 0, -1, "path too long");
    }
    if (!mkdtemp(snap)) {
        be->ops->close(be);
        return pvg_error_set_at(err, PVG_ERR_IO, snap, 0, 0, -1, "cannot create: %s",
                                strerror(errno));
    }
    st = be->ops->snapshot_to(be, snap, err);
    be->ops->close(be);

    bk_file *files = calloc(BK_MAX_FILES, sizeof *files);
    int *is_keys = calloc(BK_MAX_FILES, sizeof *is_keys);
    int n = 0;
    if ((!files || !is_keys) && st == PVG_OK)
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    /* the SQLite backend's databases as snapshot_to made them (audit.db:
     * the audit log, docs/store.md) */
    static const char *const fixed[] = {PVG_STORE_ID_FILE, "policy.json", "privguide.db",
                                        "keystore.db", "audit.db"};
    for (int i = 0; st == PVG_OK && i < 5; i++) {
        is_keys[n] = i == 3;
        bk_file *f = &files[n++];
        snprintf(f->name, sizeof f->name, "%s", fixed[i]);
        struct stat sb;
        errno = 0;
        if (snprintf(f->src, sizeof f->src, "%s/%s", i < 2 ? data_dir : snap, fixed[i]) >=
            (int)sizeof f->src)
            st = pvg_error_set_at(err, PVG_ERR_INVALID, data_dir, 0, 0, -1, "path too long");
        else if (stat(f->src, &sb) != 0 || !S_ISREG(sb.st_mode))
            st = pvg_error_set_at(err, PVG_ERR_IO, f->src, 0, 0, -1, "cannot read: %s",
                                  errno ? strerror(errno) : "not a file");
        if (st == PVG_OK) f->size = sb.st_size;
    }
    if (st == PVG_OK) st = add_models(data_dir, "", files, &n, err);
    if (st == PVG_OK) st = add_models(data_dir, PVG_MODEL_SUBDIR, files, &n, err);
    int written = 0, wk = 0;
    long long bytes = 0, bk = 0;
    if (st == PVG_OK && out_path)
        st = write_backup(out_path, "data", sid, files, is_keys, n, &written, &bytes, err);
    if (st == PVG_OK && keys_out_path) {
        st = write_backup(keys_out_path, "keys", sid, files, is_keys, n, &wk, &bk, err);
        if (st != PVG_OK && out_path) unlink(out_path); /* both or neither */
    }
    /* the snapshot directory: its three databases, then itself */
    for (int i = 2; i < 5; i++) {
        if (snprintf(path, sizeof path, "%s/%s", snap, fixed[i]) < (int)sizeof path) unlink(path);
    }
    rmdir(snap);
    if (st == PVG_OK && info) {
        snprintf(info->store_id, sizeof info->store_id, "%s", sid);
        info->files = written + wk;
        info->bytes = bytes + bk;
    }
    free(files);
    free(is_keys);
    return st;
}

/* ---- restore ---- */

static pvg_status read_exact(FILE *f, void *buf, size_t len, crypto_generichash_state *h,
                             const char *path, long long *off, pvg_error *err)
{
    if (fread(buf, 1, len, f) != len)
        return pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, *off,
                                "truncated backup (wanted %zu more bytes)", len);
    if (h) crypto_generichash_update(h, buf, len);
    *off += (long long)len;
    return PVG_OK;
}

/* Reads the header and manifest; leaves f after the manifest. */
static pvg_status read_manifest(FILE *f, const char *path, crypto_generichash_state *h,
                                json_t **out, long long *off, pvg_error *err)
{
    char magic[BK_MAGIC_LEN];
    unsigned char len8[8];
    pvg_status st = read_exact(f, magic, BK_MAGIC_LEN, h, path, off, err);
    if (st == PVG_OK && memcmp(magic, BK_MAGIC, BK_MAGIC_LEN) != 0)
        return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, 0,
                                "not a privguide backup (expected \"PVGBACKUP1\")");
    if (st == PVG_OK) st = read_exact(f, len8, 8, h, path, off, err);
    if (st != PVG_OK) return st;
    uint64_t ml = get_u64(len8);
    if (ml == 0 || ml > BK_MANIFEST_MAX)
        return pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, BK_MAGIC_LEN,
                                "manifest length %llu out of range", (unsigned long long)ml);
    char *m = malloc(ml + 1);
    if (!m) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    st = read_exact(f, m, ml, h, path, off, err);
    m[ml] = 0;
    json_error_t je;
    *out = st == PVG_OK ? json_loads(m, 0, &je) : NULL;
    free(m);
    if (st == PVG_OK && !*out)
        st = pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, BK_MAGIC_LEN + 8 + je.position,
                              "manifest: %s", je.text);
    return st;
}

/* Checks every file entry of the manifest; *n: how many. */
/* Checks the manifest of a backup of `kind` ("data" or "keys"): format 2,
 * the kind, a store id, at most BK_MAX_FILES plain names, each once, with
 * sizes adding up to content_bytes (so nothing is written from a file that
 * does not hold what it says), and keystore.db only in a key-store backup. */
static pvg_status check_manifest(json_t *m, const char *path, const char *kind,
                                 long long content_bytes, size_t *n, pvg_error *err)
{
    json_t *files = json_object_get(m, "files");
    const char *k = json_string_value(json_object_get(m, "kind"));
    if (json_integer_value(json_object_get(m, "format")) != 2 || !json_is_array(files) ||
        !json_is_string(json_object_get(m, "store_id")) || !k)
        return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                "manifest: expected format 2 with kind, store_id and files");
    if (strcmp(k, kind) != 0)
        return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                "a %s backup where a %s backup was expected (the data and the "
                                "key store are backed up to two files: backup --out / --keys-out)",
                                k, kind);
    *n = json_array_size(files);
    if (*n > BK_MAX_FILES)
        return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                "manifest: %zu files (at most %d)", *n, BK_MAX_FILES);
    long long sum = 0;
    for (size_t i = 0; i < *n; i++) {
        json_t *e = json_array_get(files, i);
        const char *name = json_string_value(json_object_get(e, "name"));
        json_t *sz = json_object_get(e, "size");
        if (!name || !name_ok(name) || !json_is_integer(sz) || json_integer_value(sz) < 0 ||
            json_integer_value(sz) > content_bytes)
            return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                    "manifest: files[%zu]: expected a plain file name and a size",
                                    i);
        if ((strcmp(name, "keystore.db") == 0) != (strcmp(kind, "keys") == 0) &&
            (strcmp(kind, "keys") != 0 || strcmp(name, PVG_STORE_ID_FILE) != 0))
            return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                    "manifest: files[%zu]: '%s' does not belong in a %s backup", i,
                                    name, kind);
        for (size_t j = 0; j < i; j++)
            if (strcmp(name,
                       json_string_value(json_object_get(json_array_get(files, j), "name"))) == 0)
                return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                        "manifest: files[%zu]: '%s' named twice", i, name);
        sum += json_integer_value(sz);
    }
    if (sum != content_bytes)
        return pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, -1,
                                "manifest: the files' sizes add up to %lld bytes, the file holds "
                                "%lld",
                                sum, content_bytes);
    return PVG_OK;
}

/* Erases again the shoppers on the suppression list still present. */
typedef struct supp_ctx {
    unsigned char (*p)[16];
    size_t n, cap;
} supp_ctx;

static int supp_take(void *ctx, const unsigned char p[16])
{
    supp_ctx *c = ctx;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        void *np = realloc(c->p, cap * sizeof *c->p);
        if (!np) return 1;
        c->p = np;
        c->cap = cap;
    }
    memcpy(c->p[c->n++], p, 16);
    return 0;
}

static pvg_status reapply_suppression(pvg_store *s, pvg_backup_info *info, pvg_error *err)
{
    supp_ctx c = {0};
    pvg_status st = PVG_B(s, suppress_foreach, supp_take, &c, err);
    if (st == PVG_ERR_ABORTED) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    long long again = 0;
    for (size_t i = 0; st == PVG_OK && i < c.n; i++) {
        pvg_backend_user u;
        pvg_backend_key k;
        int had_user = 0, had_key = 0;
        st = PVG_B(s, key_get, c.p[i], &k, err);
        if (st == PVG_OK) had_key = 1;
        if (st == PVG_ERR_NOT_FOUND) pvg_error_clear(err), st = PVG_OK;
        if (st == PVG_OK) st = PVG_B(s, user_get, c.p[i], &u, err);
        if (st == PVG_OK) had_user = 1;
        if (st == PVG_ERR_NOT_FOUND) pvg_error_clear(err), st = PVG_OK;
        if (st == PVG_OK && had_key) st = PVG_B(s, key_delete, c.p[i], err);
        if (st == PVG_OK && had_user) st = PVG_B(s, user_delete, u.id, c.p[i], err);
        int rewritten = 0;
        if (st == PVG_OK) st = pvg_model_dir_erase_user(s->dir, s, c.p[i], &rewritten, err);
        if (had_user || had_key || rewritten) again++;
    }
    if (st == PVG_OK && again) {
        for (int i = 0; i < 50; i++) {
            st = pvg_store_checkpoint(s, err);
            if (st != PVG_ERR_BUSY) break;
            usleep(100000);
        }
    }
    if (info) {
        info->suppressed = (long long)c.n;
        info->erased_again = again;
    }
    free(c.p);
    return st;
}

/* Removes what a failed restore wrote into dir (its files, models/, and
 * dir itself when the restore made it). */
static void restore_undo(const char *dir, int made_dir)
{
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/%s", dir, PVG_MODEL_SUBDIR);
    const char *dirs[2] = {sub, dir};
    for (int k = 0; k < 2; k++) {
        DIR *d = opendir(dirs[k]);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
            char p[4096];
            if (snprintf(p, sizeof p, "%s/%s", dirs[k], de->d_name) < (int)sizeof p) unlink(p);
        }
        if (d) closedir(d);
        if (k == 0) rmdir(sub);
    }
    if (made_dir) rmdir(dir);
}

/* Checks the integrity hash of the backup at path, then writes its files
 * (a backup of `kind`) into new_dir; *sid gets its store id (malloc'd). */
static pvg_status extract(const char *path, const char *kind, const char *new_dir, char **sid,
                          int *files_out, long long *bytes_out, pvg_error *err)
{
    *sid = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open: %s",
                                strerror(errno));
    /* pass 1: the integrity hash over the whole file */
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, BK_HASH);
    struct stat sb;
    long long total = fstat(fileno(f), &sb) == 0 ? (long long)sb.st_size : -1;
    if (total < BK_MAGIC_LEN + 8 + BK_HASH) {
        fclose(f);
        return pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, -1,
                                "too short for a privguide backup");
    }
    unsigned char buf[1 << 16], sum[BK_HASH], want[BK_HASH];
    long long left = total - BK_HASH;
    while (left > 0) {
        size_t r = fread(buf, 1, left < (long long)sizeof buf ? (size_t)left : sizeof buf, f);
        if (r == 0) break;
        crypto_generichash_update(&h, buf, r);
        left -= (long long)r;
    }
    crypto_generichash_final(&h, sum, BK_HASH);
    if (left != 0 || fread(want, 1, BK_HASH, f) != BK_HASH ||
        sodium_memcmp(sum, want, BK_HASH) != 0) {
        fclose(f);
        return pvg_error_set_at(
            err, PVG_ERR_CORRUPT, path, 0, 0, total - BK_HASH,
            "the integrity hash does not match: the backup is damaged or truncated");
    }
    /* pass 2: manifest and files */
    rewind(f);
    long long off = 0;
    json_t *m = NULL;
    size_t n = 0;
    pvg_status st = read_manifest(f, path, NULL, &m, &off, err);
    if (st == PVG_OK) st = check_manifest(m, path, kind, total - BK_HASH - off, &n, err);
    long long bytes = 0;
    json_t *files = m ? json_object_get(m, "files") : NULL;
    for (size_t i = 0; st == PVG_OK && i < n; i++) {
        json_t *e = json_array_get(files, i);
        const char *name = json_string_value(json_object_get(e, "name"));
        long long size = (long long)json_integer_value(json_object_get(e, "size"));
        char out[4096];
        snprintf(out, sizeof out, "%s/%s", new_dir, name);
        if (strchr(name, '/')) {
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", new_dir, PVG_MODEL_SUBDIR);
            st = pvg_datadir_make(sub, 1, NULL, err);
        }
        /* store.id comes in both backups: the second must match the first */
        if (st == PVG_OK && strcmp(name, PVG_STORE_ID_FILE) == 0 && access(out, F_OK) == 0) {
            for (long long l = size; st == PVG_OK && l > 0;) {
                size_t k = l < (long long)sizeof buf ? (size_t)l : sizeof buf;
                st = read_exact(f, buf, k, NULL, path, &off, err);
                l -= (long long)k;
            }
            continue;
        }
        int fd = -1;
        if (st == PVG_OK) st = pvg_datafile_open(out, O_WRONLY | O_CREAT | O_EXCL, &fd, err);
        for (long long l = size; st == PVG_OK && l > 0;) {
            size_t k = l < (long long)sizeof buf ? (size_t)l : sizeof buf;
            st = read_exact(f, buf, k, NULL, path, &off, err);
            if (st == PVG_OK) st = write_all(fd, buf, k, NULL, out, err);
            l -= (long long)k;
        }
        if (st == PVG_OK && fsync(fd) != 0)
            st = pvg_error_set_at(err, PVG_ERR_IO, out, 0, 0, -1, "fsync: %s", strerror(errno));
        if (fd >= 0) close(fd);
        bytes += size;
    }
    fclose(f);
    const char *id = m ? json_string_value(json_object_get(m, "store_id")) : NULL;
    if (st == PVG_OK && !(*sid = strdup(id ? id : "")))
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    json_decref(m);
    *files_out = (int)n;
    *bytes_out = bytes;
    return st;
}

/* Users whose data key the key store does not hold (erased after the data
 * backup was taken, before the key-store backup): their records are
 * shredded; they join the suppression list, and their rows and model rows
 * go. */
typedef struct keyless_ctx {
    pvg_store *s;
    unsigned char (*p)[16];
    int64_t *id;
    size_t n, cap;
    pvg_status st;
    pvg_error *err;
} keyless_ctx;

static int keyless_take(void *ctx, const pvg_backend_user *u)
{
    keyless_ctx *c = ctx;
    pvg_backend_key k;
    pvg_status st = PVG_B(c->s, key_get, u->pseudonym, &k, c->err);
    if (st == PVG_OK) return 0;
    if (st != PVG_ERR_NOT_FOUND) {
        c->st = st;
        return 1;
    }
    pvg_error_clear(c->err);
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        void *np = realloc(c->p, cap * sizeof *c->p),
             *ni = np ? realloc(c->id, cap * sizeof *c->id) : NULL;
        if (np) c->p = np;
        if (!np || !ni) {
            c->st = pvg_error_set(c->err, PVG_ERR_NOMEM, "out of memory");
            return 1;
        }
        c->id = ni;
        c->cap = cap;
    }
    memcpy(c->p[c->n], u->pseudonym, 16);
    c->id[c->n++] = u->id;
    return 0;
}

static pvg_status drop_keyless(pvg_store *s, long long *dropped, pvg_error *err)
{
    keyless_ctx c = {s, NULL, NULL, 0, 0, PVG_OK, err};
    pvg_status st = PVG_B(s, users_foreach, NULL, keyless_take, &c, err);
    if (st == PVG_ERR_ABORTED) st = c.st;
    for (size_t i = 0; st == PVG_OK && i < c.n; i++) {
        /* an erasure the data backup predates: it goes on the suppression
         * list first, as pvg_store_user_delete does, so that an old import
         * cannot bring the shopper back into the restored store */
        st = PVG_B(s, suppress_add, c.p[i], err);
        if (st == PVG_OK) st = PVG_B(s, user_delete, c.id[i], c.p[i], err);
        int rewritten = 0;
        if (st == PVG_OK) st = pvg_model_dir_erase_user(s->dir, s, c.p[i], &rewritten, err);
    }
    *dropped = (long long)c.n;
    free(c.p);
    free(c.id);
    return st;
}

pvg_status pvg_store_restore(const char *backup_path, const char *keys_path, const char *new_dir,
                             const char *key_file, pvg_backup_info *info, pvg_error *err)
{
    if (info) memset(info, 0, sizeof *info);
    if (!backup_path || !new_dir)
        return pvg_error_set(err, PVG_ERR_INVALID, "restore: NULL backup or data dir");
    if (!keys_path)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "restore: a data backup holds no key: give the key-store backup too "
                             "(written by backup --keys-out)");
    pvg_status st = pvg_init();
    if (st != PVG_OK) return pvg_error_set(err, st, "the system random generator is unavailable");
    int made_dir = 0;
    st = pvg_datadir_make(new_dir, 0, &made_dir, err);
    if (st != PVG_OK) return st;
    if (!made_dir) {
        DIR *d = opendir(new_dir);
        int empty = d != NULL;
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL)
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) empty = 0;
        if (d) closedir(d);
        if (!empty)
            return pvg_error_set_at(err, PVG_ERR_EXISTS, new_dir, 0, 0, -1,
                                    "exists and is not an empty directory: restore into a new one");
        chmod(new_dir, 0700);
    }
    char *sid = NULL, *ksid = NULL;
    int nf = 0, nk = 0;
    long long bytes = 0, kbytes = 0;
    st = extract(backup_path, "data", new_dir, &sid, &nf, &bytes, err);
    if (st == PVG_OK) st = extract(keys_path, "keys", new_dir, &ksid, &nk, &kbytes, err);
    if (st == PVG_OK && strcmp(sid, ksid) != 0)
        st = pvg_error_set_at(err, PVG_ERR_INVALID, keys_path, 0, 0, -1,
                              "the key store of store %s, the data of store %s", ksid, sid);
    if (st == PVG_OK && info) {
        snprintf(info->store_id, sizeof info->store_id, "%s", sid);
        info->files = nf + nk;
        info->bytes = bytes + kbytes;
    }
    free(sid);
    free(ksid);
    /* the restored store opens with its key file, then erasure sticks */
    pvg_store *s = NULL;
    if (st == PVG_OK) {
        pvg_store_open_options o = {.key_file = key_file};
        st = pvg_store_open_with(new_dir, &o, &s, err);
    }
    if (st == PVG_OK) st = reapply_suppression(s, info, err);
    long long dropped = 0;
    if (st == PVG_OK) st = drop_keyless(s, &dropped, err);
    if (st == PVG_OK && info) info->erased_again += dropped;
    pvg_store_free(s);
    if (st != PVG_OK) restore_undo(new_dir, made_dir);
    return st;
}
