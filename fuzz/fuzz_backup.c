/*
 * fuzz_backup.c - libFuzzer harness for the backup restore parser
 * (pvg_store_restore, src/store/backup.c: the header, the manifest, its
 * file entries and the files' bytes written into a new data dir). The
 * input is a data backup without its trailing integrity hash: the harness
 * appends the BLAKE2b-256 of the input (the hash is an integrity check,
 * not an authenticator: anyone who crafts a backup can compute it), so the
 * parser behind it is reached. The key-store backup given with it is
 * empty, so a data backup that parses is extracted and then undone; the
 * harness checks that a failure says why and that no file is left behind
 * in the new directory (restore_undo) and nothing is written outside it.
 * Seeds: fuzz/corpus/backup/ (a small store's data backup, hash removed).
 */
#include "fuzz_common.h"

#include <privguide/backup.h>

#include <dirent.h>
#include <ftw.h>
#include <sodium.h>

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static size_t entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) n++;
    if (d) closedir(d);
    return n;
}

static char root[64], keys[96], target[96];

static void cleanup(void)
{
    nftw(root, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!root[0]) {
        if (pvg_init() != PVG_OK) abort();
        snprintf(root, sizeof root, "/tmp/pvg-fuzz-backup-XXXXXX");
        if (!mkdtemp(root)) abort();
        snprintf(keys, sizeof keys, "%s/keys.bak", root);
        FILE *f = fopen(keys, "wb");
        if (!f) abort();
        fclose(f);
        snprintf(target, sizeof target, "%s/new", root);
        atexit(cleanup);
    }
    uint8_t *buf = malloc(size + 32);
    if (!buf) return 0;
    memcpy(buf, data, size);
    crypto_generichash(buf + size, 32, data, size, NULL, 0);
    char path[64];
    int fd = fuzz_file(buf, size + 32, path, sizeof path);
    free(buf);
    if (fd < 0) return 0;
    pvg_backup_info info;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_store_restore(path, keys, target, NULL, &info, &err);
    close(fd);
    /* the key-store backup is empty: a restore can never succeed */
    if (st == PVG_OK) abort();
    fuzz_check_error(st, &err);
    /* undone: the new directory is gone or empty, and the root holds only
     * the keys file and it */
    size_t left = access(target, F_OK) == 0 ? entries(target) : 0;
    if (left) {
        fprintf(stderr, "restore left %zu files in %s (%s)\n", left, target, err.text);
        abort();
    }
    if (entries(root) > 2) {
        fprintf(stderr, "restore wrote outside its directory\n");
        abort();
    }
    nftw(target, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
