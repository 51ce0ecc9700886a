/*
 * test_model_erasure.c - models trained from the store are personal data:
 * on the bundled sample store (data/online-retail-sample.csv.gz), the model
 * file holds no shopper's pseudonym, history or factors in the clear; it
 * opens only with the store's model key; erasing a shopper through
 * pvg_store_user_delete rewrites every model file of the data dir without
 * them (and leaves none of the old sealed bytes in the directory); a
 * running server stops personalising for them within one second even with
 * a slow reload thread; and a second server on a busy port is refused.
 */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "model/model_internal.h"
#include "t_sample_store.h"

#include <privguide/auth.h>
#include <privguide/ledger.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct {
    char dir[256], dd[300], other[300];
} E;

/* ---- helpers ---- */

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void write_bytes(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static int contains(const unsigned char *hay, size_t n, const void *needle, size_t m)
{
    return m && m <= n && memmem(hay, n, needle, m) != NULL;
}

/* Trains a model of type t from the store into path. */
static void train_to(pvg_store *s, pvg_model_type t, const char *path)
{
    pvg_dataset *ds = NULL;
    pvg_error err;
    if (pvg_dataset_load_store(s, NULL, &ds, NULL, &err) != PVG_OK) fail_msg("%s", err.text);
    pvg_train_params p;
    pvg_train_params_default(t, &p);
    p.factors = 8;
    p.epochs = 3;
    p.neighbors = 50;
    pvg_model *m = NULL;
    if (pvg_model_train(ds, &p, &m, NULL, &err) != PVG_OK) fail_msg("%s", err.text);
    if (pvg_model_save(m, path, &err) != PVG_OK) fail_msg("%s", err.text);
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

static pvg_model *open_model(pvg_store *s, const char *path)
{
    pvg_model *m = NULL;
    pvg_error err;
    if (pvg_model_load_store(path, s, &m, &err) != PVG_OK) fail_msg("%s", err.text);
    return m;
}

/* The checksum field of a model file recomputed (what anyone can do: it is
 * unkeyed), so only the AEAD tag can catch an edit. */
static void fix_checksum(unsigned char *b, size_t n)
{
    memset(b + 240, 0, 32);
    unsigned char sum[32];
    crypto_generichash(sum, 32, b, n, NULL, 0);
    memcpy(b + 240, sum, 32);
}

static int setup(void **state)
{
    (void)state;
    snprintf(E.dir, sizeof E.dir, "/tmp/pvg_test_model_erasure_XXXXXX");
    if (!mkdtemp(E.dir)) return -1;
    snprintf(E.dd, sizeof E.dd, "%s/data", E.dir);
    snprintf(E.other, sizeof E.other, "%s/other", E.dir);
    pvg_error err;
    if (pvg_store_init(E.dd, NULL, &err) != PVG_OK ||
        pvg_store_init(E.other, NULL, &err) != PVG_OK) {
        fprintf(stderr, "init: %s\n", err.text);
        return -1;
    }
    pvg_store *s = NULL;
    if (pvg_store_open(E.dd, &s, &err) != PVG_OK) return -1;
    char sample[600];
    const char *src = getenv("PVG_SOURCE_DIR");
    snprintf(sample, sizeof sample, "%s/data/online-retail-sample.csv.gz", src ? src : ".");
    pvg_ingest_stats st;
    /* the shop's catalogue (the DP popular list's domain): sale rows make none */
    if (t_sample_catalogue_declare(s) != 0) {
        pvg_store_free(s);
        return -1;
    }
    if (pvg_store_ingest_file(s, sample, PVG_FORMAT_ONLINE_RETAIL, NULL, &st, &err) != PVG_OK) {
        fprintf(stderr, "ingest %s: %s\n", sample, err.text);
        pvg_store_free(s);
        return -1;
    }
    pvg_store_free(s);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", E.dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- the sealed file ---- */

static void test_sealed_file_reveals_no_shopper(void **state)
{
    (void)state;
    pvg_store *s = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_open(E.dd, &s, &err), PVG_OK);
    char path[400];
    snprintf(path, sizeof path, "%s/sealed-test.pvgm", E.dd);
    pvg_model_type types[] = {PVG_MODEL_IALS, PVG_MODEL_ITEMKNN};
    for (int t = 0; t < 2; t++) {
        train_to(s, types[t], path);
        size_t n;
        unsigned char *file = read_bytes(path, &n);
        assert_non_null(file);
        pvg_model *m = open_model(s, path);
        assert_true(pvg_model_n_users(m) > 500);
        /* histories are searched outside the item sections: item indices in
         * the catalog's sort order or neighbour lists can repeat a short
         * history by coincidence */
        unsigned char *rest = malloc(n);
        memcpy(rest, file, n);
        for (int sec = 1; sec < PVG_SEC_COUNT; sec++) {
            if (pvg_model_section_is_user(sec)) continue;
            uint64_t so, sl;
            memcpy(&so, file + 512 + 16 * sec, 8);
            memcpy(&sl, file + 512 + 16 * sec + 8, 8);
            if (sl) memset(rest + so, 0, sl);
        }
        size_t checked_hist = 0;
        for (uint64_t p = 0; p < m->n_users; p++) {
            /* no pseudonym of any shopper */
            if (contains(file, n, m->user_keys + 16 * p, 16))
                fail_msg("user key %llu found in the file", (unsigned long long)p);
            uint32_t u = m->user_order[p];
            uint64_t b = m->hist_indptr[u], len = m->hist_indptr[u + 1] - b;
            /* no item list (as stored: item indices, weights) of a shopper
             * with 4+ items, no factor row */
            if (len >= 4) {
                checked_hist++;
                if (contains(rest, n, m->hist_items + b, 4 * len))
                    fail_msg("history of user %u found in the file", u);
                if (len >= 8 && contains(rest, n, m->hist_w + b, 4 * len))
                    fail_msg("history weights of user %u found in the file", u);
            }
            if (m->U && contains(file, n, m->U + (size_t)u * m->factors, 4 * m->factors))
                fail_msg("factors of user %u found in the file", u);
        }
        assert_true(checked_hist > 100);
        assert_non_null(memmem(file, n, "85123A", 6)); /* item ids are plain catalog data */
        /* without the store: the item side only */
        pvg_model *l = NULL;
        assert_int_equal(pvg_model_load(path, &l, &err), PVG_OK);
        pvg_scored_item out[10];
        size_t got;
        assert_int_equal(pvg_model_recommend(l, m->user_keys, 10, 0, out, &got, &err),
                         PVG_ERR_STATE);
        assert_non_null(strstr(err.text, "sealed"));
        assert_int_equal(pvg_model_similar(l, "85123A", 5, out, &got, &err), PVG_OK);
        assert_int_equal(pvg_model_save(l, path, &err), PVG_ERR_STATE);
        /* unsealed with the store: the same answers as the trained model */
        assert_int_equal(pvg_model_unseal(l, s, &err), PVG_OK);
        for (uint64_t p = 0; p < m->n_users; p += 37) {
            pvg_scored_item a[10], c[10];
            size_t na, nc;
            assert_int_equal(pvg_model_recommend(m, m->user_keys + 16 * p, 10, 0, a, &na, NULL),
                             PVG_OK);
            assert_int_equal(pvg_model_recommend(l, m->user_keys + 16 * p, 10, 0, c, &nc, NULL),
                             PVG_OK);
            assert_int_equal(na, nc);
            for (size_t i = 0; i < na; i++)
                assert_true(a[i].item_index == c[i].item_index);
        }
        pvg_model_free(l);
        /* a re-save seals again, with a fresh nonce */
        assert_int_equal(pvg_model_save(m, path, &err), PVG_OK);
        size_t n2;
        unsigned char *file2 = read_bytes(path, &n2);
        assert_int_equal(n, n2);
        assert_memory_not_equal(file, file2, n);
        free(file2);
        pvg_model_free(m);
        free(rest);
        free(file);
    }
    unlink(path);
    pvg_store_free(s);
}

/* Header fields of a model file (docs/models.md). */
#define H_N_USERS 24
#define H_SEAL_ID 296
#define H_SEALED_OFF 312
#define H_SEALED_LEN 320
#define DIR_ENTRY 48

static uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void test_wrong_key_and_tamper(void **state)
{
    (void)state;
    pvg_store *s = NULL, *o = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_open(E.dd, &s, &err), PVG_OK);
    assert_int_equal(pvg_store_open(E.other, &o, &err), PVG_OK);
    char path[400], foreign[400];
    snprintf(path, sizeof path, "%s/tamper-test.pvgm", E.dd);
    snprintf(foreign, sizeof foreign, "%s/copied.pvgm", E.other);
    train_to(s, PVG_MODEL_IALS, path);
    size_t n;
    unsigned char *b = read_bytes(path, &n);
    pvg_model *m = NULL;
    /* another store's data dir: not a place for this store's model */
    assert_int_equal(pvg_model_load_store(path, o, &m, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "data dir"));
    /* copied into another store's data dir: no shopper opens there */
    write_bytes(foreign, b, n);
    assert_int_equal(pvg_model_load_store(foreign, o, &m, &err), PVG_ERR_CRYPTO);
    assert_null(m);
    assert_non_null(strstr(err.text, "another store"));
    unlink(foreign);
    uint64_t so = rd64(b + H_SEALED_OFF), nu = rd64(b + H_N_USERS);
    assert_true(so >= 1024 && so < n && nu > 500);
    /* a byte of one shopper's sealed row flipped, the (unkeyed) checksum
     * fixed: that row does not open (the shopper is absent, counted), the
     * others do */
    uint64_t row = rd64(b + so + 32); /* the first row's offset */
    b[so + row + 30] ^= 1;
    fix_checksum(b, n);
    write_bytes(path, b, n);
    assert_int_equal(pvg_model_load_store(path, s, &m, &err), PVG_OK);
    assert_int_equal(pvg_model_n_shredded(m), 1);
    assert_int_equal(pvg_model_n_users(m), nu - 1);
    pvg_model_free(m);
    /* the seal id the rows are bound to edited: no row opens */
    b[so + row + 30] ^= 1;
    b[H_SEAL_ID] ^= 1;
    fix_checksum(b, n);
    write_bytes(path, b, n);
    assert_int_equal(pvg_model_load_store(path, s, &m, &err), PVG_ERR_CRYPTO);
    b[H_SEAL_ID] ^= 1;
    fix_checksum(b, n);
    write_bytes(path, b, n);
    assert_int_equal(pvg_model_load_store(path, s, &m, &err), PVG_OK);
    assert_int_equal(pvg_model_n_shredded(m), 0);
    pvg_model_free(m);
    free(b);
    unlink(path);
    pvg_store_free(o);
    pvg_store_free(s);
}

static void test_store_keyed_model_without_link_is_not_saved(void **state)
{
    (void)state;
    pvg_dataset *ds;
    assert_int_equal(pvg_dataset_new(PVG_KEY_STORE_PSEUDONYM, NULL, NULL, &ds, NULL), PVG_OK);
    unsigned char k[16];
    memset(k, 7, 16);
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = PVG_EVENT_VIEW;
    e.item = "x";
    assert_int_equal(pvg_dataset_add(ds, k, &e, NULL), PVG_OK);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_POPULARITY, &p);
    pvg_model *m;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, NULL), PVG_OK);
    char path[400];
    snprintf(path, sizeof path, "%s/nolink.pvgm", E.dir);
    pvg_error err;
    assert_int_equal(pvg_model_save(m, path, &err), PVG_ERR_STATE);
    assert_non_null(strstr(err.text, "plaintext"));
    assert_int_equal(access(path, F_OK), -1);
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

/* ---- erasure ---- */

/* Every regular file under dir (one level) searched for needle. */
static int dir_contains(const char *dir, const unsigned char *needle, size_t m, char *where,
                        size_t wl)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int found = 0;
    while (!found && (de = readdir(d)) != NULL) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        size_t n;
        unsigned char *b = read_bytes(p, &n);
        if (b && contains(b, n, needle, m)) {
            found = 1;
            snprintf(where, wl, "%s", de->d_name);
        }
        free(b);
    }
    closedir(d);
    return found;
}

static void test_erasure_reaches_every_model(void **state)
{
    (void)state;
    pvg_store *s = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_open(E.dd, &s, &err), PVG_OK);
    char m1[400], m2[400], mf[400];
    snprintf(m1, sizeof m1, "%s/model.pvgm", E.dd);
    snprintf(m2, sizeof m2, "%s/knn-any-name", E.dd);
    snprintf(mf, sizeof mf, "%s/from-file.pvgm", E.dir);
    train_to(s, PVG_MODEL_IALS, m1);
    train_to(s, PVG_MODEL_ITEMKNN, m2);
    const char *victim = "17850";
    unsigned char p[16];
    pvg_store_pseudonym(s, victim, p);
    pvg_model *before1 = open_model(s, m1), *before2 = open_model(s, m2);
    assert_true(before1->keying == PVG_KEY_STORE_PSEUDONYM);
    pvg_scored_item out[10];
    size_t got;
    assert_int_equal(pvg_model_recommend(before1, p, 10, 0, out, &got, &err), PVG_OK);
    assert_int_equal(pvg_model_recommend(before2, p, 10, 0, out, &got, &err), PVG_OK);
    /* the old rows region */
    size_t n_old;
    unsigned char *old = read_bytes(m1, &n_old);
    uint64_t so = rd64(old + H_SEALED_OFF), sl = rd64(old + H_SEALED_LEN);
    uint64_t nu_old = rd64(old + H_N_USERS);
    assert_true(sl > 1024 && so + sl <= n_old);
    assert_int_equal(pvg_store_user_delete(s, victim, &err), PVG_OK);

    pvg_model *after1 = open_model(s, m1), *after2 = open_model(s, m2);
    assert_int_equal(pvg_model_recommend(after1, p, 10, 0, out, &got, &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_model_recommend(after2, p, 10, 0, out, &got, &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_model_n_users(after1), pvg_model_n_users(before1) - 1);
    assert_int_equal(pvg_model_n_users(after2), pvg_model_n_users(before2) - 1);
    /* every other shopper intact: the same recommendations, scores and all */
    for (uint64_t q = 0; q < before1->n_users; q++) {
        const unsigned char *k = before1->user_keys + 16 * q;
        if (memcmp(k, p, 16) == 0) continue;
        pvg_scored_item a[10], b[10];
        size_t na, nb;
        assert_int_equal(pvg_model_recommend(before1, k, 10, 0, a, &na, NULL), PVG_OK);
        assert_int_equal(pvg_model_recommend(after1, k, 10, 0, b, &nb, NULL), PVG_OK);
        assert_int_equal(na, nb);
        for (size_t i = 0; i < na; i++)
            assert_true(a[i].item_index == b[i].item_index && a[i].score == b[i].score);
        if (q % 5) continue;
        assert_int_equal(pvg_model_recommend(before2, k, 10, 0, a, &na, NULL), PVG_OK);
        assert_int_equal(pvg_model_recommend(after2, k, 10, 0, b, &nb, NULL), PVG_OK);
        assert_int_equal(na, nb);
        for (size_t i = 0; i < na; i++)
            assert_true(a[i].item_index == b[i].item_index && a[i].score == b[i].score);
    }
    /* the victim's directory entry and sealed row are in no file of the
     * data dir (the other rows were copied as they are): the entry that
     * left the directory is theirs */
    size_t n_new;
    unsigned char *nb = read_bytes(m1, &n_new);
    assert_int_equal(rd64(nb + H_N_USERS), nu_old - 1);
    uint64_t so2 = rd64(nb + H_SEALED_OFF);
    int gone = -1;
    for (uint64_t i = 0; i < nu_old; i++) {
        int present = 0;
        for (uint64_t j = 0; j + 1 < nu_old && !present; j++)
            present = memcmp(old + so + DIR_ENTRY * i, nb + so2 + DIR_ENTRY * j, 16) == 0;
        if (!present) {
            assert_int_equal(gone, -1);
            gone = (int)i;
        }
    }
    assert_true(gone >= 0);
    free(nb);
    const unsigned char *ve = old + so + DIR_ENTRY * (uint64_t)gone;
    uint64_t voff = rd64(ve + 32), vlen = rd64(ve + DIR_ENTRY + 32) - voff;
    if ((uint64_t)gone + 1 == nu_old) vlen = sl - voff;
    assert_true(vlen > 40);
    char where[300];
    if (dir_contains(E.dd, ve, 32, where, sizeof where))
        fail_msg("the victim's directory entry survives in %s", where);
    for (uint64_t off = 0; off + 24 <= vlen; off += 24)
        if (dir_contains(E.dd, old + so + voff + off, 24, where, sizeof where))
            fail_msg("the victim's sealed row (at %llu) survives in %s", (unsigned long long)off,
                     where);
    free(old);
    /* no temp file left behind */
    DIR *d = opendir(E.dd);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        assert_null(strstr(de->d_name, ".tmp."));
    closedir(d);
    /* deleting a shopper who is in no model rewrites nothing */
    struct stat a1, a2;
    assert_int_equal(stat(m1, &a1), 0);
    int rewritten = -1;
    unsigned char nobody[16];
    memset(nobody, 0x5a, 16);
    assert_int_equal(pvg_model_dir_erase_user(E.dd, s, nobody, &rewritten, &err), PVG_OK);
    assert_int_equal(rewritten, 0);
    assert_int_equal(stat(m1, &a2), 0);
    assert_true(a1.st_ino == a2.st_ino);
    /* a file-trained model is not linked to the store */
    pvg_dataset *ds;
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, NULL, &ds, NULL), PVG_OK);
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = PVG_EVENT_VIEW;
    e.item = "x";
    assert_int_equal(pvg_dataset_add_ext(ds, victim, &e, NULL), PVG_OK);
    pvg_train_params tp;
    pvg_train_params_default(PVG_MODEL_POPULARITY, &tp);
    pvg_model *fm;
    assert_int_equal(pvg_model_train(ds, &tp, &fm, NULL, NULL), PVG_OK);
    assert_int_equal(pvg_model_save(fm, mf, &err), PVG_OK);
    int removed = -1;
    assert_int_equal(pvg_model_file_erase_user(mf, s, p, &removed, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "trained from a file"));
    pvg_model_free(fm);
    pvg_dataset_free(ds);
    pvg_model_free(before1);
    pvg_model_free(before2);
    pvg_model_free(after1);
    pvg_model_free(after2);
    unlink(m2);
    pvg_store_free(s);
}

/* The backup thief: a copy of a model file taken before an erasure and
 * restored after it (or read with the key file) never yields the erased
 * shopper's rows again: their row key died with their data key. */
static void test_backup_restored_after_erasure(void **state)
{
    (void)state;
    pvg_store *s = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_open(E.dd, &s, &err), PVG_OK);
    char mp[400], backup[400];
    snprintf(mp, sizeof mp, "%s/model.pvgm", E.dd);
    snprintf(backup, sizeof backup, "%s/backup.pvgm", E.dir);
    train_to(s, PVG_MODEL_IALS, mp);
    size_t n;
    unsigned char *copy = read_bytes(mp, &n);
    write_bytes(backup, copy, n);
    pvg_model *before = open_model(s, mp);
    const char *victim = "13047";
    unsigned char p[16];
    pvg_store_pseudonym(s, victim, p);
    pvg_scored_item out[10];
    size_t got;
    assert_int_equal(pvg_model_recommend(before, p, 10, 0, out, &got, &err), PVG_OK);

    /* allowed to return (no suppression), so the same id can come back */
    assert_int_equal(pvg_store_user_erase(s, victim, PVG_ERASE_ALLOW_RETURN, &err), PVG_OK);
    /* the disk failed; the backup comes back; an admin re-enables consent
     * for the same id (a new shopper with a new data key) */
    write_bytes(mp, copy, n);
    pvg_consent c = {1, 1};
    assert_int_equal(pvg_store_consent_set(s, victim, &c, &err), PVG_OK);
    /* with the store, i.e. everything the key file gives: their row stays
     * sealed, every other shopper is served as before */
    pvg_model *after = open_model(s, mp);
    assert_int_equal(pvg_model_n_shredded(after), 1);
    assert_int_equal(pvg_model_n_users(after), pvg_model_n_users(before) - 1);
    assert_int_equal(pvg_model_recommend(after, p, 10, 0, out, &got, &err), PVG_ERR_NOT_FOUND);
    for (uint64_t q = 0; q < before->n_users; q += 7) {
        const unsigned char *k = before->user_keys + 16 * q;
        if (memcmp(k, p, 16) == 0) continue;
        pvg_scored_item a[10], b[10];
        size_t na, nb;
        assert_int_equal(pvg_model_recommend(before, k, 10, 0, a, &na, NULL), PVG_OK);
        assert_int_equal(pvg_model_recommend(after, k, 10, 0, b, &nb, NULL), PVG_OK);
        assert_int_equal(na, nb);
        for (size_t i = 0; i < na; i++)
            assert_true(a[i].item_index == b[i].item_index && a[i].score == b[i].score);
    }
    /* their history and factors are nowhere in the restored file in the
     * clear */
    int64_t u = -1;
    for (uint64_t q = 0; q < before->n_users; q++)
        if (memcmp(before->user_keys + 16 * q, p, 16) == 0) u = before->user_order[q];
    assert_true(u >= 0);
    uint64_t hb = before->hist_indptr[u], hl = before->hist_indptr[u + 1] - hb;
    if (hl >= 2) assert_false(contains(copy, n, before->hist_items + hb, 4 * hl));
    assert_false(contains(copy, n, before->U + (size_t)u * before->factors, 4 * before->factors));
    /* the erasure on the restored file removes the leftover row too */
    int removed = 0;
    assert_int_equal(pvg_model_file_erase_user(mp, s, p, &removed, &err), PVG_OK);
    assert_int_equal(removed, 1);
    pvg_model_free(after);
    after = open_model(s, mp);
    assert_int_equal(pvg_model_n_shredded(after), 0);
    pvg_model_free(after);
    pvg_model_free(before);
    free(copy);
    unlink(backup);
    pvg_store_free(s);
}

/* Master-key rotation rewraps data keys without changing them: models
 * trained before it still open, and erasure still works. */
static void test_rotation_keeps_models(void **state)
{
    (void)state;
    pvg_store *s = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_open(E.dd, &s, &err), PVG_OK);
    char mp[400];
    snprintf(mp, sizeof mp, "%s/model.pvgm", E.dd);
    train_to(s, PVG_MODEL_ITEMKNN, mp);
    pvg_model *before = open_model(s, mp);
    long long rewrapped = 0;
    assert_int_equal(pvg_store_keys_rotate(s, &rewrapped, &err), PVG_OK);
    assert_true(rewrapped > 500);
    pvg_store_free(s);
    assert_int_equal(pvg_store_open(E.dd, &s, &err), PVG_OK);
    pvg_model *after = open_model(s, mp);
    assert_int_equal(pvg_model_n_users(after), pvg_model_n_users(before));
    const char *victim = "14911";
    unsigned char p[16];
    pvg_store_pseudonym(s, victim, p);
    pvg_scored_item a[10], b[10];
    size_t na, nb;
    assert_int_equal(pvg_model_recommend(before, p, 10, 0, a, &na, &err), PVG_OK);
    assert_int_equal(pvg_model_recommend(after, p, 10, 0, b, &nb, &err), PVG_OK);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++)
        assert_true(a[i].item_index == b[i].item_index);
    assert_int_equal(pvg_store_user_delete(s, victim, &err), PVG_OK);
    pvg_model_free(after);
    after = open_model(s, mp);
    assert_int_equal(pvg_model_recommend(after, p, 10, 0, a, &na, &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_model_n_users(after), pvg_model_n_users(before) - 1);
    pvg_model_free(after);
    pvg_model_free(before);
    pvg_store_free(s);
}

/* Where model files may live, and erasure over all of it: the data dir's
 * top level (dot-files included) and its models/ sub-directory; a model
 * file erasure cannot handle fails it loudly, naming the file. */
static void test_model_places_and_loud_erasure(void **state)
{
    (void)state;
    pvg_store *s = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_open(E.dd, &s, &err), PVG_OK);
    char hidden[400], sub[400], subdir[400], outside[400], plain[400], planted[400];
    snprintf(hidden, sizeof hidden, "%s/.hidden.pvgm", E.dd);
    snprintf(subdir, sizeof subdir, "%s/models", E.dd);
    snprintf(sub, sizeof sub, "%s/models/sub.pvgm", E.dd);
    snprintf(outside, sizeof outside, "%s/elsewhere.pvgm", E.dir);
    snprintf(plain, sizeof plain, "%s/plain.pvgm", E.dir);
    snprintf(planted, sizeof planted, "%s/models/planted.pvgm", E.dd);
    mkdir(subdir, 0700);
    train_to(s, PVG_MODEL_ITEMKNN, hidden);
    train_to(s, PVG_MODEL_IALS, sub);
    /* a store-trained model is not saved outside its data dir */
    pvg_dataset *ds = NULL;
    assert_int_equal(pvg_dataset_load_store(s, NULL, &ds, NULL, &err), PVG_OK);
    pvg_train_params tp;
    pvg_train_params_default(PVG_MODEL_POPULARITY, &tp);
    pvg_model *m = NULL;
    assert_int_equal(pvg_model_train(ds, &tp, &m, NULL, &err), PVG_OK);
    assert_int_equal(pvg_model_save(m, outside, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "data dir"));
    assert_int_equal(access(outside, F_OK), -1);
    pvg_model_free(m);
    pvg_dataset_free(ds);
    /* a file-trained model is not saved inside a data dir */
    assert_int_equal(pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, NULL, &ds, NULL), PVG_OK);
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = PVG_EVENT_VIEW;
    e.item = "85123A";
    assert_int_equal(pvg_dataset_add_ext(ds, "17850", &e, NULL), PVG_OK);
    assert_int_equal(pvg_model_train(ds, &tp, &m, NULL, NULL), PVG_OK);
    assert_int_equal(pvg_model_save(m, planted, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "inside a data dir"));
    assert_int_equal(pvg_model_save(m, plain, &err), PVG_OK); /* elsewhere: evaluation */
    pvg_model_free(m);
    pvg_dataset_free(ds);
    /* nor used with a store */
    assert_int_equal(pvg_model_load_store(plain, s, &m, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "trained from a file"));

    const char *victim = "15311";
    unsigned char p[16];
    pvg_store_pseudonym(s, victim, p);
    pvg_model *h1 = open_model(s, hidden), *s1 = open_model(s, sub);
    pvg_scored_item out[10];
    size_t got;
    assert_int_equal(pvg_model_recommend(h1, p, 10, 0, out, &got, &err), PVG_OK);
    assert_int_equal(pvg_model_recommend(s1, p, 10, 0, out, &got, &err), PVG_OK);
    pvg_model_free(h1);
    pvg_model_free(s1);
    /* one it cannot erase, planted (copied in) among them */
    size_t n;
    unsigned char *b = read_bytes(plain, &n);
    write_bytes(planted, b, n);
    free(b);
    assert_int_equal(pvg_store_user_delete(s, victim, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.source, "planted.pvgm"));
    assert_non_null(strstr(err.text, "trained from a file"));
    /* the others were erased all the same */
    h1 = open_model(s, hidden);
    s1 = open_model(s, sub);
    assert_int_equal(pvg_model_recommend(h1, p, 10, 0, out, &got, &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_model_recommend(s1, p, 10, 0, out, &got, &err), PVG_ERR_NOT_FOUND);
    pvg_model_free(h1);
    pvg_model_free(s1);
    int rewritten = -1;
    assert_int_equal(pvg_model_dir_erase_user(E.dd, s, p, &rewritten, &err), PVG_ERR_INVALID);
    assert_int_equal(rewritten, 0);
    unlink(planted);
    assert_int_equal(pvg_model_dir_erase_user(E.dd, s, p, &rewritten, &err), PVG_OK);
    unlink(hidden);
    unlink(sub);
    unlink(plain);
    rmdir(subdir);
    pvg_store_free(s);
}

/* ---- the running server ---- */

static int http_get(int port, const char *path, const char *cred, int *status, char **body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Authorization: Bearer %s\r\n\r\n",
                     path, cred);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap) buf = realloc(buf, cap *= 2);
        ssize_t k = recv(fd, buf + len, cap - len - 1, 0);
        if (k <= 0) break;
        len += (size_t)k;
    }
    close(fd);
    buf[len] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1 || !sep) {
        free(buf);
        return -1;
    }
    *body = strdup(sep + 4);
    free(buf);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void start_server(int port, int reload_ms, pvg_server **out, pvg_status want, pvg_error *err)
{
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = E.dd;
    o.port = port;
    o.threads = 2;
    o.reload_ms = reload_ms;
    o.popular_k = 5;
    o.allow_insecure_rng = 1;
    o.insecure_seed = 1;
    pvg_status st = pvg_server_start(&o, out, err);
    if (st != want) fail_msg("server start: %d (%s), want %d", st, err->text, want);
}

static void test_server_stops_personalising_within_1s(void **state)
{
    (void)state;
    pvg_store *s = NULL;
    pvg_error err;
    assert_int_equal(pvg_store_open(E.dd, &s, &err), PVG_OK);
    char mp[400];
    snprintf(mp, sizeof mp, "%s/model.pvgm", E.dd);
    train_to(s, PVG_MODEL_IALS, mp);
    assert_int_equal(pvg_ledger_set_budget(s, "default", 10.0, 1e-6, &err), PVG_OK);
    char *admin = NULL;
    pvg_principal pr;
    assert_int_equal(pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "test", 0, &admin, &pr, &err),
                     PVG_OK);
    /* the reload thread checks only every minute: only the on-request check
     * can make the erasure visible in time */
    pvg_server *srv = NULL;
    start_server(0, 60000, &srv, PVG_OK, &err);
    int port = pvg_server_port(srv);
    const char *victim = "12583";
    char path[128];
    snprintf(path, sizeof path, "/v1/users/%s/recommendations?k=5", victim);
    int status = 0;
    char *body = NULL;
    assert_int_equal(http_get(port, path, admin, &status, &body), 0);
    assert_int_equal(status, 200);
    if (!strstr(body, "\"personalized\":true")) fail_msg("before erasure: %s", body);
    free(body);

    /* erased through the library (another connection, as the CLI would),
     * allowed to return (a suppressed shopper's consent cannot be set:
     * test_store.c), then an admin re-enables consent for the same id */
    assert_int_equal(pvg_store_user_erase(s, victim, PVG_ERASE_ALLOW_RETURN, &err), PVG_OK);
    double t0 = now_s();
    pvg_consent c = {1, 1};
    assert_int_equal(pvg_store_consent_set(s, victim, &c, &err), PVG_OK);
    /* a failure is a request begun 1 s or more after the erasure that is
     * still personalised; one begun in time and answered late (the test
     * descheduled on a loaded machine) is asked again */
    int personal = 1;
    double t = t0;
    for (;;) {
        double began = now_s();
        assert_int_equal(http_get(port, path, admin, &status, &body), 0);
        t = now_s();
        if (status == 404 || (status == 200 && strstr(body, "\"personalized\":false"))) {
            personal = 0;
            free(body);
            break;
        }
        free(body);
        if (began - t0 >= 1.0) break;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (personal) fail_msg("still personalised %.2f s after the erasure", t - t0);
    /* and never again */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(http_get(port, path, admin, &status, &body), 0);
        assert_int_equal(status, 200);
        assert_non_null(strstr(body, "\"personalized\":false"));
        assert_non_null(strstr(body, "not_in_model"));
        free(body);
    }
    pvg_server_free(srv);
    pvg_auth_credential_free(admin);
    pvg_store_free(s);
}

static void test_busy_port_refused(void **state)
{
    (void)state;
    pvg_error err;
    pvg_server *a = NULL, *b = NULL;
    start_server(0, 1000, &a, PVG_OK, &err);
    int port = pvg_server_port(a);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    /* a second server on the first one's port */
    start_server(port, 1000, &b, PVG_ERR_BUSY, &err);
    assert_null(b);
    assert_non_null(strstr(err.text, want));
    assert_non_null(strstr(err.text, "in use"));
    pvg_server_free(a);
    /* a port held by another program */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    start_server(ntohs(sa.sin_port), 1000, &b, PVG_ERR_BUSY, &err);
    assert_null(b);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sealed_file_reveals_no_shopper),
        cmocka_unit_test(test_wrong_key_and_tamper),
        cmocka_unit_test(test_store_keyed_model_without_link_is_not_saved),
        cmocka_unit_test(test_erasure_reaches_every_model),
        cmocka_unit_test(test_backup_restored_after_erasure),
        cmocka_unit_test(test_rotation_keeps_models),
        cmocka_unit_test(test_model_places_and_loud_erasure),
        cmocka_unit_test(test_server_stops_personalising_within_1s),
        cmocka_unit_test(test_busy_port_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
