/*
 * keys.c - the key hierarchy of the store.
 *
 *   master.key (0600)  pepper (pseudonym key) and master key, or the master
 *                      key in $PRIVGUIDE_MASTER_KEY; during a rotation also
 *                      the next master key
 *   keystore.db        one random 32-byte data key per user, wrapped by the
 *                      master key (XChaCha20-Poly1305; associated data
 *                      "pvg-dk1" || pseudonym), tagged with the key id (kid)
 *                      of the master key that wraps it
 *
 * Keys live in sodium_malloc'd memory (guard pages, wiped on free). The
 * kid of a key is an 8-byte BLAKE2b of it; it lets a rotation that was
 * interrupted know which rows still need rewrapping.
 */
#include "store/store_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYFILE_MAGIC "privguide-keys 1"

void pvg_kid_of(const unsigned char key[PVG_KEY_BYTES], unsigned char kid[PVG_KID_BYTES])
{
    crypto_generichash(kid, PVG_KID_BYTES, key, PVG_KEY_BYTES, (const unsigned char *)"pvg-kid-v1",
                       10);
}

/* Decodes base64 (any variant) or 64 hex digits into a 32-byte key. */
static int decode_key(const char *txt, unsigned char out[PVG_KEY_BYTES])
{
    size_t n = strlen(txt), bin_len = 0;
    while (n > 0 && (txt[n - 1] == '\n' || txt[n - 1] == '\r' || txt[n - 1] == ' ')) n--;
    if (n == 64 && sodium_hex2bin(out, PVG_KEY_BYTES, txt, n, NULL, &bin_len, NULL) == 0 &&
        bin_len == PVG_KEY_BYTES)
        return 0;
    static const int variants[] = {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_URLSAFE,
                                   sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING};
    for (int i = 0; i < 4; i++)
        if (sodium_base642bin(out, PVG_KEY_BYTES, txt, n, NULL, &bin_len, NULL, variants[i]) == 0 &&
            bin_len == PVG_KEY_BYTES)
            return 0;
    return -1;
}

static void encode_key(const unsigned char key[PVG_KEY_BYTES], char *out, size_t cap)
{
    sodium_bin2base64(out, cap, key, PVG_KEY_BYTES, sodium_base64_VARIANT_ORIGINAL);
}

/* Writes the key file atomically: temp file 0600, fsync, rename, fsync dir. */
static pvg_status write_keyfile(const char *path, const unsigned char *pepper,
                                const unsigned char *master, const unsigned char *next,
                                pvg_error *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return pvg_error_set_at(err, PVG_ERR_IO, tmp, 0, 0, -1, "cannot create: %s", strerror(errno));
    char *buf = sodium_malloc(1024);
    char b64[64];
    if (!buf) {
        close(fd);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    size_t len = 0;
    len += (size_t)snprintf(buf + len, 1024 - len,
                            "# privguide key file. Keep it secret and backed up apart from the data:\n"
                            "# without it no user's records can be read.\n" KEYFILE_MAGIC "\n");
    encode_key(pepper, b64, sizeof b64);
    len += (size_t)snprintf(buf + len, 1024 - len, "pepper %s\n", b64);
    if (master) {
        encode_key(master, b64, sizeof b64);
        len += (size_t)snprintf(buf + len, 1024 - len, "master %s\n", b64);
    } else
        len += (size_t)snprintf(buf + len, 1024 - len, "master env\n");
    if (next) {
        encode_key(next, b64, sizeof b64);
        len += (size_t)snprintf(buf + len, 1024 - len, "next %s\n", b64);
    }
    sodium_memzero(b64, sizeof b64);
    ssize_t w = write(fd, buf, len);
    sodium_free(buf);
    if (w != (ssize_t)len || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return pvg_error_set_at(err, PVG_ERR_IO, tmp, 0, 0, -1, "write failed: %s", strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "rename failed: %s", strerror(e));
    }
    /* fsync the directory so the rename is durable. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0'; else snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return PVG_OK;
}

pvg_status pvg_keys_create_file(const char *path, int master_in_env, pvg_error *err)
{
    unsigned char *k = sodium_malloc(2 * PVG_KEY_BYTES);
    if (!k) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    randombytes_buf(k, 2 * PVG_KEY_BYTES);
    pvg_status st = write_keyfile(path, k, master_in_env ? NULL : k + PVG_KEY_BYTES, NULL, err);
    sodium_free(k);
    return st;
}

static pvg_status keyring_alloc(pvg_keyring *kr)
{
    memset(kr, 0, sizeof *kr);
    kr->mem = sodium_malloc(4 * PVG_KEY_BYTES);
    if (!kr->mem) return PVG_ERR_NOMEM;
    sodium_memzero(kr->mem, 4 * PVG_KEY_BYTES);
    kr->pepper = kr->mem;
    kr->dedup = kr->mem + PVG_KEY_BYTES;
    kr->master = kr->mem + 2 * PVG_KEY_BYTES;
    kr->next = kr->mem + 3 * PVG_KEY_BYTES;
    return PVG_OK;
}

void pvg_keys_free(pvg_keyring *kr)
{
    if (kr->mem) sodium_free(kr->mem);
    memset(kr, 0, sizeof *kr);
}

pvg_status pvg_keys_load(const char *path, pvg_keyring *kr, pvg_error *err)
{
    if (keyring_alloc(kr) != PVG_OK) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        pvg_status st = pvg_error_set_at(err, errno == ENOENT ? PVG_ERR_NOT_FOUND : PVG_ERR_IO, path,
                                         0, 0, -1, "cannot open the key file: %s", strerror(errno));
        pvg_keys_free(kr);
        return st;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || (sb.st_mode & 077) != 0) {
        close(fd);
        pvg_keys_free(kr);
        return pvg_error_set_at(err, PVG_ERR_PERMISSION, path, 0, 0, -1,
                                "the key file is readable or writable by group or others (mode %03o); "
                                "run chmod 600 on it",
                                (unsigned)(sb.st_mode & 0777));
    }
    char *buf = sodium_malloc(4096);
    if (!buf) {
        close(fd);
        pvg_keys_free(kr);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    ssize_t n = read(fd, buf, 4095);
    close(fd);
    pvg_status st = PVG_OK;
    int have_pepper = 0, have_master = 0, master_env = 0, have_magic = 0;
    long lineno = 0;
    if (n < 0) {
        st = pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "read failed: %s", strerror(errno));
        goto done;
    }
    buf[n] = '\0';
    for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        lineno++;
        if (line[0] == '#' || line[0] == '\0') continue;
        if (strcmp(line, KEYFILE_MAGIC) == 0) {
            have_magic = 1;
            continue;
        }
        char *sp = strchr(line, ' ');
        if (!sp) {
            st = pvg_error_set_at(err, PVG_ERR_CORRUPT, path, lineno, 1, -1,
                                  "expected 'pepper KEY', 'master KEY|env' or 'next KEY'");
            goto done;
        }
        *sp = '\0';
        const char *val = sp + 1;
        unsigned char *dst = NULL;
        if (strcmp(line, "pepper") == 0) {
            dst = kr->pepper;
            have_pepper = 1;
        } else if (strcmp(line, "master") == 0) {
            if (strcmp(val, "env") == 0) {
                master_env = 1;
                continue;
            }
            dst = kr->master;
            have_master = 1;
        } else if (strcmp(line, "next") == 0) {
            dst = kr->next;
            kr->has_next = 1;
        } else {
            st = pvg_error_set_at(err, PVG_ERR_CORRUPT, path, lineno, 1, -1, "unknown entry '%.20s'", line);
            goto done;
        }
        if (decode_key(val, dst) != 0) {
            st = pvg_error_set_at(err, PVG_ERR_CORRUPT, path, lineno, (long)(val - line) + 1, -1,
                                  "%s: expected a 32-byte key in base64", line);
            goto done;
        }
    }
    if (!have_magic || !have_pepper || (!have_master && !master_env)) {
        st = pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, -1,
                              "not a complete privguide key file (needs '%s', pepper and master lines)",
                              KEYFILE_MAGIC);
        goto done;
    }
    const char *env = getenv(PVG_ENV_MASTER_KEY);
    if (env && *env) {
        if (decode_key(env, kr->master) != 0) {
            st = pvg_error_set(err, PVG_ERR_INVALID, "%s: expected a 32-byte key in base64 or hex",
                               PVG_ENV_MASTER_KEY);
            goto done;
        }
        kr->master_from_env = 1;
        const char *nenv = getenv(PVG_ENV_NEW_MASTER_KEY);
        if (nenv && *nenv && !kr->has_next) {
            if (decode_key(nenv, kr->next) != 0) {
                st = pvg_error_set(err, PVG_ERR_INVALID, "%s: expected a 32-byte key in base64 or hex",
                                   PVG_ENV_NEW_MASTER_KEY);
                goto done;
            }
            kr->has_next = 1;
        }
    } else if (master_env) {
        st = pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                              "the master key is kept outside the key file: set %s", PVG_ENV_MASTER_KEY);
        goto done;
    }
    crypto_generichash(kr->dedup, PVG_KEY_BYTES, (const unsigned char *)"pvg-record-id-v1", 16,
                       kr->pepper, PVG_KEY_BYTES);
    pvg_kid_of(kr->master, kr->kid);
    if (kr->has_next) pvg_kid_of(kr->next, kr->next_kid);
done:
    sodium_free(buf);
    if (st != PVG_OK) pvg_keys_free(kr);
    return st;
}

static void wrap_ad(const unsigned char pseudonym[16], unsigned char ad[23])
{
    memcpy(ad, "pvg-dk1", 7);
    memcpy(ad + 7, pseudonym, 16);
}

void pvg_keys_wrap(pvg_store *s, const unsigned char *master, const unsigned char pseudonym[16],
                   const unsigned char key[PVG_KEY_BYTES], unsigned char out[PVG_WRAPPED_BYTES])
{
    unsigned char ad[23];
    wrap_ad(pseudonym, ad);
    pvg_rng_bytes(s->rng, out, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, NULL,
                                               key, PVG_KEY_BYTES, ad, sizeof ad, NULL, out, master);
}

pvg_status pvg_keys_unwrap(const pvg_keyring *kr, const unsigned char *kid,
                           const unsigned char pseudonym[16], const unsigned char *wrapped,
                           size_t wrapped_len, unsigned char key[PVG_KEY_BYTES])
{
    const unsigned char *mk = NULL;
    if (sodium_memcmp(kid, kr->kid, PVG_KID_BYTES) == 0)
        mk = kr->master;
    else if (kr->has_next && sodium_memcmp(kid, kr->next_kid, PVG_KID_BYTES) == 0)
        mk = kr->next;
    if (!mk || wrapped_len != PVG_WRAPPED_BYTES) return PVG_ERR_CRYPTO;
    unsigned char ad[23];
    wrap_ad(pseudonym, ad);
    unsigned long long outlen;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            key, &outlen, NULL, wrapped + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
            PVG_WRAPPED_BYTES - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, ad, sizeof ad, wrapped,
            mk) != 0 ||
        outlen != PVG_KEY_BYTES)
        return PVG_ERR_CRYPTO;
    return PVG_OK;
}

/* ---- cache of unwrapped data keys ---- */

pvg_status pvg_keycache_init(pvg_keycache *c, size_t cap)
{
    c->cap = cap;
    c->n = 0;
    c->slots = sodium_malloc(cap * sizeof *c->slots);
    if (!c->slots) return PVG_ERR_NOMEM;
    sodium_memzero(c->slots, cap * sizeof *c->slots);
    return PVG_OK;
}

void pvg_keycache_free(pvg_keycache *c)
{
    if (c->slots) sodium_free(c->slots);
    c->slots = NULL;
    c->cap = c->n = 0;
}

static size_t slot_of(const pvg_keycache *c, const unsigned char p[16])
{
    uint64_t h;
    memcpy(&h, p, 8); /* pseudonyms are uniformly random already */
    return (size_t)(h & (c->cap - 1));
}

pvg_keycache_entry *pvg_keycache_find(pvg_keycache *c, const unsigned char p[16])
{
    for (size_t i = slot_of(c, p), k = 0; k < c->cap; k++, i = (i + 1) & (c->cap - 1)) {
        if (!c->slots[i].used) return NULL;
        if (memcmp(c->slots[i].pseudonym, p, 16) == 0) return &c->slots[i];
    }
    return NULL;
}

pvg_keycache_entry *pvg_keycache_insert(pvg_keycache *c, const unsigned char p[16])
{
    if (c->n + 1 > c->cap / 2) { /* full: forget everything (keys reload from the key store) */
        sodium_memzero(c->slots, c->cap * sizeof *c->slots);
        c->n = 0;
    }
    size_t i = slot_of(c, p);
    while (c->slots[i].used) i = (i + 1) & (c->cap - 1);
    c->slots[i].used = 1;
    memcpy(c->slots[i].pseudonym, p, 16);
    c->n++;
    return &c->slots[i];
}

void pvg_keycache_remove(pvg_keycache *c, const unsigned char p[16])
{
    (void)p;
    /* Linear probing makes single removal fiddly; removal is rare (user
     * deletion), so the whole cache is wiped instead. */
    sodium_memzero(c->slots, c->cap * sizeof *c->slots);
    c->n = 0;
}

/* ---- rotation ---- */

typedef struct rewrap_ctx {
    pvg_store *s;
    unsigned char *key; /* sodium_malloc */
} rewrap_ctx;

/* Opens a stored key with the current or next master key and wraps it
 * under the next one. */
static pvg_status rewrap_one(void *vctx, const unsigned char p[16], const pvg_backend_key *old,
                             unsigned char *out, size_t *out_len, pvg_error *err)
{
    rewrap_ctx *c = vctx;
    const pvg_keyring *kr = &c->s->keys;
    if (old->kid_len != PVG_KID_BYTES || old->wrapped_len > sizeof old->wrapped ||
        pvg_keys_unwrap(kr, old->kid, p, old->wrapped, old->wrapped_len, c->key) != PVG_OK)
        return pvg_error_set(err, PVG_ERR_CRYPTO,
                             "a wrapped key cannot be opened with the current or the next master key");
    pvg_keys_wrap(c->s, kr->next, p, c->key, out);
    sodium_memzero(c->key, PVG_KEY_BYTES);
    *out_len = PVG_WRAPPED_BYTES;
    return PVG_OK;
}

pvg_status pvg_store_keys_rotate(pvg_store *s, long long *rewrapped, pvg_error *err)
{
    if (rewrapped) *rewrapped = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/master.key", s->dir);
    pvg_keyring *kr = &s->keys;
    if (!kr->has_next) {
        if (kr->master_from_env)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "the master key comes from %s: put the new key in %s and run again",
                                 PVG_ENV_MASTER_KEY, PVG_ENV_NEW_MASTER_KEY);
        /* Step 1: record the next key beside the current one. */
        randombytes_buf(kr->next, PVG_KEY_BYTES);
        pvg_status st = write_keyfile(path, kr->pepper, kr->master, kr->next, err);
        if (st != PVG_OK) return st;
        pvg_kid_of(kr->next, kr->next_kid);
        kr->has_next = 1;
    }
    /* Step 2: rewrap, in batches, every key not yet under the next key.
     * From now on new data keys must be wrapped under the next key: a
     * process still holding only the old key fails its next batch with
     * PVG_ERR_BUSY instead of writing keys that the rotation would miss. */
    pvg_status st = PVG_B(s, wrap_kid_set, kr->next_kid, err);
    rewrap_ctx rc = {s, sodium_malloc(PVG_KEY_BYTES)};
    if (st == PVG_OK && !rc.key) st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    while (st == PVG_OK) {
        long long batch = 0;
        st = PVG_B(s, keys_rewrap_batch, kr->next_kid, 512, rewrap_one, &rc, &batch, err);
        if (st == PVG_OK && rewrapped) *rewrapped += batch;
        if (batch == 0) break;
    }
    if (rc.key) sodium_free(rc.key);
    if (st != PVG_OK) return st;
    /* Step 3: the next key becomes the master key; the old one is gone. */
    if (!kr->master_from_env) {
        st = write_keyfile(path, kr->pepper, kr->next, NULL, err);
        if (st != PVG_OK) return st;
    }
    memcpy(kr->master, kr->next, PVG_KEY_BYTES);
    memcpy(kr->kid, kr->next_kid, PVG_KID_BYTES);
    sodium_memzero(kr->next, PVG_KEY_BYTES);
    kr->has_next = 0;
    /* Old wrapped forms may linger in freed pages and the logs: wipe them
     * (best effort: a busy reader only delays it to a later checkpoint). */
    (void)PVG_B(s, checkpoint, NULL);
    return PVG_OK;
}
