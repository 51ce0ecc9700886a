/*
 * test_datafiles.c - the files privguide writes in a data dir, and how it
 * opens them (src/store/datafile.h):
 *
 * - whatever the umask (0 and 022 here), every file under a data dir is
 *   0600 and every directory 0700: after init (store.id and policy.json
 *   used to be 0644), while the store is open (the databases' -wal and
 *   -shm files), after a backup (the two backup files), a restore and a
 *   store copy; init tightens an existing 0755 data dir;
 * - a symbolic link in place of privguide.db, keystore.db, audit.db,
 *   store.id or policy.json is refused on open with an error naming the
 *   file, and nothing is made at the link's target (a dangling link stays
 *   dangling).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "t_files.h"

#include <privguide/backup.h>
#include <privguide/store.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Fails the test naming the first file under dir (recursively) whose mode
 * is not 0600, or directory not 0700; returns the number of files seen. */
static int check_modes(const char *dir)
{
    struct stat sb;
    assert_int_equal(lstat(dir, &sb), 0);
    if ((sb.st_mode & 07777) != 0700)
        fail_msg("%s: directory mode %03o, want 0700", dir, sb.st_mode & 07777);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int files = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        assert_int_equal(lstat(path, &sb), 0);
        if (S_ISDIR(sb.st_mode)) {
            files += check_modes(path);
        } else {
            if (!S_ISREG(sb.st_mode)) fail_msg("%s: not a regular file", path);
            if ((sb.st_mode & 07777) != 0600)
                fail_msg("%s: mode %03o, want 0600", path, sb.st_mode & 07777);
            files++;
        }
    }
    closedir(d);
    return files;
}

static void file_mode_is(const char *path, unsigned want)
{
    struct stat sb;
    assert_int_equal(lstat(path, &sb), 0);
    if ((sb.st_mode & 07777) != want)
        fail_msg("%s: mode %03o, want %03o", path, sb.st_mode & 07777, want);
}

static int exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static void modes_under(mode_t mask)
{
    mode_t old = umask(mask);
    char *root = t_tmpdir("datafiles");
    char keys[512], dir[512], bk[512], bkk[512], rest[512], copy[512];
    snprintf(keys, sizeof keys, "%s/keys", root);
    snprintf(dir, sizeof dir, "%s/data", root);
    snprintf(bk, sizeof bk, "%s/backup.data", root);
    snprintf(bkk, sizeof bkk, "%s/backup.keys", root);
    snprintf(rest, sizeof rest, "%s/restored", root);
    snprintf(copy, sizeof copy, "%s/copy", root);
    setenv(PVG_ENV_KEY_FILE, keys, 1);
    /* an existing data dir of the umask's mode is made 0700 */
    assert_int_equal(mkdir(dir, 0755), 0);
    pvg_error err;
    if (pvg_store_init(dir, NULL, &err) != PVG_OK) fail_msg("init: %s", err.text);
    assert_true(check_modes(dir) >= 4); /* the databases, store.id, policy.json */

    /* open and written: the WAL side files exist now */
    pvg_store *s = NULL;
    if (pvg_store_open(dir, &s, &err) != PVG_OK) fail_msg("open: %s", err.text);
    pvg_event ev = {0};
    ev.type = PVG_EVENT_CART;
    ev.item = "x";
    ev.ts = pvg_store_now(s);
    assert_int_equal(pvg_store_event_put(s, "a", &ev, NULL, NULL, &err), PVG_OK);
    char wal[600];
    snprintf(wal, sizeof wal, "%s/privguide.db-wal", dir);
    assert_true(exists(wal));
    check_modes(dir);
    pvg_store_free(s);

    pvg_backup_info info;
    if (pvg_store_backup(dir, bk, bkk, &info, &err) != PVG_OK) fail_msg("backup: %s", err.text);
    file_mode_is(bk, 0600);
    file_mode_is(bkk, 0600);
    check_modes(dir); /* no staging left behind, nothing widened */
    if (pvg_store_restore(bk, bkk, rest, keys, &info, &err) != PVG_OK)
        fail_msg("restore: %s", err.text);
    assert_true(check_modes(rest) >= 4);

    pvg_store_copy_report r;
    unsetenv("PRIVGUIDE_DATABASE_URL");
    if (pvg_store_copy(dir, copy, NULL, &r, &err) != PVG_OK) fail_msg("copy: %s", err.text);
    assert_true(check_modes(copy) >= 4);

    t_rm_rf(root);
    free(root);
    umask(old);
}

static void test_modes_umask_022(void **state)
{
    (void)state;
    modes_under(022);
}

static void test_modes_umask_0(void **state)
{
    (void)state;
    modes_under(0);
}

/* Replaces dir/name by a symbolic link to a file elsewhere, checks that
 * open refuses it naming the file, then makes the link dangle and checks
 * that open still refuses it and makes nothing at the target; puts the file
 * back. */
static void refuses_link(const char *root, const char *dir, const char *name)
{
    char path[600], target[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(target, sizeof target, "%s/elsewhere-%s", root, name);
    assert_int_equal(rename(path, target), 0);
    assert_int_equal(symlink(target, path), 0);
    pvg_store *s = NULL;
    pvg_error err;
    memset(&err, 0, sizeof err);
    pvg_status st = pvg_store_open(dir, &s, &err);
    if (st == PVG_OK) fail_msg("%s: a symbolic link was opened", name);
    assert_null(s);
    if (!strstr(err.source, name) && !strstr(err.text, name))
        fail_msg("%s: the error does not name it: %s: %s", name, err.source, err.text);
    if (strcmp(name, "store.id") != 0) { /* store.id is read where the key file is found */
        assert_int_equal(st, PVG_ERR_PERMISSION);
        assert_non_null(strstr(err.text, "symbolic link"));
    }
    /* dangling: still refused, nothing is made where it points */
    char aside[700];
    snprintf(aside, sizeof aside, "%s.aside", target);
    assert_int_equal(rename(target, aside), 0);
    assert_int_not_equal(pvg_store_open(dir, &s, &err), PVG_OK);
    assert_null(s);
    assert_false(exists(target));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rename(aside, path), 0);
    /* the store opens again with its own file */
    if (pvg_store_open(dir, &s, &err) != PVG_OK) fail_msg("reopen after %s: %s", name, err.text);
    pvg_store_free(s);
}

static void test_symlinks_refused(void **state)
{
    (void)state;
    char *root = t_tmpdir("datalinks");
    char keys[512], dir[512];
    snprintf(keys, sizeof keys, "%s/keys", root);
    snprintf(dir, sizeof dir, "%s/data", root);
    setenv(PVG_ENV_KEY_FILE, keys, 1);
    unsetenv("PRIVGUIDE_DATABASE_URL");
    pvg_error err;
    if (pvg_store_init(dir, NULL, &err) != PVG_OK) fail_msg("init: %s", err.text);
    const char *names[] = {"privguide.db", "keystore.db", "audit.db", "policy.json", "store.id"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        refuses_link(root, dir, names[i]);
    /* init does not write through a link either: a store.id link in a new data dir */
    char dir2[512], link[600], target[600];
    snprintf(dir2, sizeof dir2, "%s/data2", root);
    snprintf(link, sizeof link, "%s/store.id", dir2);
    snprintf(target, sizeof target, "%s/planted", root);
    assert_int_equal(mkdir(dir2, 0700), 0);
    assert_int_equal(symlink(target, link), 0);
    snprintf(keys, sizeof keys, "%s/keys2", root);
    setenv(PVG_ENV_KEY_FILE, keys, 1);
    assert_int_not_equal(pvg_store_init(dir2, NULL, &err), PVG_OK);
    assert_non_null(strstr(err.source, "store.id"));
    assert_false(exists(target));
    t_rm_rf(root);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modes_umask_022),
        cmocka_unit_test(test_modes_umask_0),
        cmocka_unit_test(test_symlinks_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
