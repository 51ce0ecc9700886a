/*
 * keys.c - the key hierarchy of the store.
 *
 *   key file (0600)    outside the data dir (store.c finds it): the store's
 *                      id, the pepper (pseudonym key) and the master key (or
 *                      the master key in $PRIVGUIDE_MASTER_KEY); during a
 *                      rotation also the next master key. Or its whole text
 *                      in $PRIVGUIDE_KEYS.
 *   keystore.db        one random 32-byte data key per user, wrapped by the
 *                      master key (XChaCha20-Poly1305; associated data
 *                      "pvg-dk1" || pseudonym), tagged with the key id (kid)
 *                      of the master key that wraps it
 *
 * Keys live in sodium_malloc'd memory (guard pages, wiped on free). The
 * kid of a key is an 8-byte BLAKE2b of it; it lets a rotation that was
 * interrupted know which rows still need rewrapping.
 */
#include "store/datafile.h"
#include "store/store_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
    while (n > 0 && (txt[n - 1] == '\n' || txt[n - 1] == '\r' || txt[n - 1] == ' '))
        n--;
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

/* What a key file holds, for write_keyfile. */
typedef struct keyfile_content {
    const char *store_id; /* may be NULL or "" */
    const unsigned char *pepper;
    const unsigned char *master; /* NULL: "master env" */
    const unsigned char *next;   /* may be NULL */
    int64_t audit_unkeyed_seq;   /* 0: no audit-unkeyed line */
    const unsigned char *audit_unkeyed_hash;
} keyfile_content;

static void fsync_parent(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
}

static pvg_status write_secret_file(const char *path, const char *buf, size_t len, int exclusive,
                                    pvg_error *err);

/* Writes the key file atomically (write_secret_file). */
static pvg_status write_keyfile(const char *path, const keyfile_content *kc, int exclusive,
                                pvg_error *err)
{
    char *buf = sodium_malloc(1024);
    char b64[64];
    if (!buf) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    size_t len = 0;
    len += (size_t)snprintf(
        buf + len, 1024 - len,
        "# privguide key file. Keep it secret, outside the data dir, and backed up\n"
        "# apart from the data: without it no user's records can be read.\n" KEYFILE_MAGIC "\n");
    if (kc->store_id && *kc->store_id)
        len += (size_t)snprintf(buf + len, 1024 - len, "store %s\n", kc->store_id);
    encode_key(kc->pepper, b64, sizeof b64);
    len += (size_t)snprintf(buf + len, 1024 - len, "pepper %s\n", b64);
    if (kc->master) {
        encode_key(kc->master, b64, sizeof b64);
        len += (size_t)snprintf(buf + len, 1024 - len, "master %s\n", b64);
    } else
        len += (size_t)snprintf(buf + len, 1024 - len, "master env\n");
    if (kc->next) {
        encode_key(kc->next, b64, sizeof b64);
        len += (size_t)snprintf(buf + len, 1024 - len, "next %s\n", b64);
    }
    if (kc->audit_unkeyed_seq > 0) {
        char hex[65];
        sodium_bin2hex(hex, sizeof hex, kc->audit_unkeyed_hash, 32);
        len += (size_t)snprintf(buf + len, 1024 - len, "audit-unkeyed %lld %s\n",
                                (long long)kc->audit_unkeyed_seq, hex);
    }
    sodium_memzero(b64, sizeof b64);
    pvg_status st = write_secret_file(path, buf, len, exclusive, err);
    sodium_free(buf);
    return st;
}

/* Writes text to path atomically, mode 0600: temp file, fsync, rename (or
 * link, when `exclusive`: PVG_ERR_EXISTS rather than replace a file),
 * fsync of the directory. */
static pvg_status write_secret_file(const char *path, const char *buf, size_t len, int exclusive,
                                    pvg_error *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return pvg_error_set_at(err, PVG_ERR_IO, tmp, 0, 0, -1, "cannot create: %s",
                                strerror(errno));
    ssize_t w = write(fd, buf, len);
    if (w != (ssize_t)len || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return pvg_error_set_at(err, PVG_ERR_IO, tmp, 0, 0, -1, "write failed: %s", strerror(e));
    }
    close(fd);
    if (exclusive) {
        int rc = link(tmp, path), e = errno;
        unlink(tmp);
        if (rc != 0 && e == EEXIST)
            return pvg_error_set_at(err, PVG_ERR_EXISTS, path, 0, 0, -1,
                                    "a key file exists already; refusing to overwrite it");
        if (rc != 0)
            return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot create: %s",
                                    strerror(e));
    } else if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "rename failed: %s", strerror(e));
    }
    fsync_parent(path);
    return PVG_OK;
}

pvg_status pvg_keys_create_file(const char *path, const char *store_id, int master_in_env,
                                pvg_error *err)
{
    unsigned char *k = sodium_malloc(2 * PVG_KEY_BYTES);
    if (!k) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    randombytes_buf(k, 2 * PVG_KEY_BYTES);
    keyfile_content kc = {store_id, k, master_in_env ? NULL : k + PVG_KEY_BYTES, NULL, 0, NULL};
    pvg_status st = write_keyfile(path, &kc, 1, err);
    sodium_free(k);
    return st;
}

static pvg_status keyring_alloc(pvg_keyring *kr)
{
    memset(kr, 0, sizeof *kr);
    kr->mem = sodium_malloc(5 * PVG_KEY_BYTES);
    if (!kr->mem) return PVG_ERR_NOMEM;
    sodium_memzero(kr->mem, 5 * PVG_KEY_BYTES);
    kr->pepper = kr->mem;
    kr->dedup = kr->mem + PVG_KEY_BYTES;
    kr->master = kr->mem + 2 * PVG_KEY_BYTES;
    kr->next = kr->mem + 3 * PVG_KEY_BYTES;
    kr->audit = kr->mem + 4 * PVG_KEY_BYTES;
    return PVG_OK;
}

void pvg_keys_free(pvg_keyring *kr)
{
    if (kr->mem) sodium_free(kr->mem);
    memset(kr, 0, sizeof *kr);
}

/* Parses the key file text in buf (modified in place). */
static pvg_status parse_keys(char *buf, const char *source, pvg_keyring *kr, pvg_error *err)
{
    pvg_status st = PVG_OK;
    int have_pepper = 0, have_master = 0, master_env = 0, have_magic = 0;
    long lineno = 0;
    for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        lineno++;
        size_t ll = strlen(line);
        if (ll && line[ll - 1] == '\r') line[--ll] = '\0';
        if (line[0] == '#' || line[0] == '\0') continue;
        if (strcmp(line, KEYFILE_MAGIC) == 0) {
            have_magic = 1;
            continue;
        }
        char *sp = strchr(line, ' ');
        if (!sp) {
            return pvg_error_set_at(
                err, PVG_ERR_CORRUPT, source, lineno, 1, -1,
                "expected 'store ID', 'pepper KEY', 'master KEY|env', 'next KEY' "
                "or 'audit-unkeyed SEQ HASH'");
        }
        *sp = '\0';
        const char *val = sp + 1;
        unsigned char *dst = NULL;
        if (strcmp(line, "store") == 0) {
            unsigned char id[PVG_STORE_ID_BYTES];
            size_t bl = 0;
            if (strlen(val) != 2 * PVG_STORE_ID_BYTES ||
                sodium_hex2bin(id, sizeof id, val, strlen(val), NULL, &bl, NULL) != 0 ||
                bl != sizeof id)
                return pvg_error_set_at(err, PVG_ERR_CORRUPT, source, lineno, 7, -1,
                                        "store: expected %d hex digits", 2 * PVG_STORE_ID_BYTES);
            snprintf(kr->store_id, sizeof kr->store_id, "%s", val);
            continue;
        }
        if (strcmp(line, "audit-unkeyed") == 0) {
            char *end = NULL;
            errno = 0;
            long long seq = strtoll(val, &end, 10);
            size_t bl = 0;
            if (errno || end == val || seq <= 0 || *end != ' ' || strlen(end + 1) != 64 ||
                sodium_hex2bin(kr->audit_unkeyed_hash, 32, end + 1, 64, NULL, &bl, NULL) != 0 ||
                bl != 32)
                return pvg_error_set_at(
                    err, PVG_ERR_CORRUPT, source, lineno, 15, -1,
                    "audit-unkeyed: expected a sequence number and 64 hex digits");
            kr->audit_unkeyed_seq = seq;
            continue;
        }
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
            return pvg_error_set_at(err, PVG_ERR_CORRUPT, source, lineno, 1, -1,
                                    "unknown entry '%.20s'", line);
        }
        if (decode_key(val, dst) != 0)
            return pvg_error_set_at(err, PVG_ERR_CORRUPT, source, lineno, (long)(val - line) + 1,
                                    -1, "%s: expected a 32-byte key in base64", line);
    }
    if (!have_magic || !have_pepper || (!have_master && !master_env))
        return pvg_error_set_at(
            err, PVG_ERR_CORRUPT, source, 0, 0, -1,
            "not a complete privguide key file (needs '%s', pepper and master lines)",
            KEYFILE_MAGIC);
    const char *env = getenv(PVG_ENV_MASTER_KEY);
    if (env && *env) {
        if (decode_key(env, kr->master) != 0)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "%s: expected a 32-byte key in base64 or hex", PVG_ENV_MASTER_KEY);
        kr->master_from_env = 1;
    } else if (master_env) {
        return pvg_error_set_at(err, PVG_ERR_INVALID, source, 0, 0, -1,
                                "the master key is kept outside the key file: set %s",
                                PVG_ENV_MASTER_KEY);
    }
    (void)st;
    return PVG_OK;
}

/* Derives the keys that come from the pepper and the master keys' ids;
 * reads the rotation target from the environment when the keys do. */
static pvg_status finish_keys(pvg_keyring *kr, pvg_error *err)
{
    const char *nenv = getenv(PVG_ENV_NEW_MASTER_KEY);
    if ((kr->master_from_env || kr->file_from_env) && nenv && *nenv && !kr->has_next) {
        if (decode_key(nenv, kr->next) != 0)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "%s: expected a 32-byte key in base64 or hex",
                                 PVG_ENV_NEW_MASTER_KEY);
        kr->has_next = 1;
    }
    crypto_generichash(kr->dedup, PVG_KEY_BYTES, (const unsigned char *)"pvg-record-id-v1", 16,
                       kr->pepper, PVG_KEY_BYTES);
    crypto_generichash(kr->audit, PVG_KEY_BYTES, (const unsigned char *)"pvg-audit-mac-v2", 16,
                       kr->pepper, PVG_KEY_BYTES);
    pvg_kid_of(kr->master, kr->kid);
    if (kr->has_next) pvg_kid_of(kr->next, kr->next_kid);
    return PVG_OK;
}

pvg_status pvg_keys_load_text(const char *text, const char *source, pvg_keyring *kr, pvg_error *err)
{
    if (keyring_alloc(kr) != PVG_OK) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    size_t n = strlen(text);
    if (n > 4095) {
        pvg_keys_free(kr);
        return pvg_error_set_at(err, PVG_ERR_CORRUPT, source, 0, 0, -1,
                                "longer than 4095 bytes: not a key file");
    }
    char *buf = sodium_malloc(n + 1);
    if (!buf) {
        pvg_keys_free(kr);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    memcpy(buf, text, n + 1);
    kr->file_from_env = 1;
    pvg_status st = parse_keys(buf, source, kr, err);
    if (st == PVG_OK) st = finish_keys(kr, err);
    sodium_free(buf);
    if (st != PVG_OK) pvg_keys_free(kr);
    return st;
}

pvg_status pvg_keys_load(const char *path, pvg_keyring *kr, pvg_error *err)
{
    if (keyring_alloc(kr) != PVG_OK) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        pvg_status st =
            pvg_error_set_at(err, errno == ENOENT ? PVG_ERR_NOT_FOUND : PVG_ERR_IO, path, 0, 0, -1,
                             "cannot open the key file: %s", strerror(errno));
        pvg_keys_free(kr);
        return st;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || (sb.st_mode & 077) != 0) {
        close(fd);
        pvg_keys_free(kr);
        return pvg_error_set_at(
            err, PVG_ERR_PERMISSION, path, 0, 0, -1,
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
    int e = errno;
    close(fd);
    pvg_status st;
    if (n < 0) {
        st = pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "read failed: %s", strerror(e));
    } else {
        buf[n] = '\0';
        st = parse_keys(buf, path, kr, err);
        if (st == PVG_OK) st = finish_keys(kr, err);
    }
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
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
                                               NULL, key, PVG_KEY_BYTES, ad, sizeof ad, NULL, out,
                                               master);
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
            PVG_WRAPPED_BYTES - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, ad, sizeof ad,
            wrapped, mk) != 0 ||
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
    while (c->slots[i].used)
        i = (i + 1) & (c->cap - 1);
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
        return pvg_error_set(
            err, PVG_ERR_CRYPTO,
            "a wrapped key cannot be opened with the current or the next master key");
    pvg_keys_wrap(c->s, kr->next, p, c->key, out);
    sodium_memzero(c->key, PVG_KEY_BYTES);
    *out_len = PVG_WRAPPED_BYTES;
    return PVG_OK;
}

pvg_status pvg_store_keys_rotate(pvg_store *s, long long *rewrapped, pvg_error *err)
{
    if (rewrapped) *rewrapped = 0;
    const char *path = s->key_path;
    pvg_keyring *kr = &s->keys;
    keyfile_content kc = {
        kr->store_id,          kr->pepper, kr->master, kr->next, kr->audit_unkeyed_seq,
        kr->audit_unkeyed_hash};
    if (!kr->has_next) {
        if (kr->master_from_env || !path)
            return pvg_error_set(
                err, PVG_ERR_INVALID,
                "the master key comes from %s: put the new key in %s and run again",
                kr->master_from_env ? PVG_ENV_MASTER_KEY : PVG_ENV_KEYS, PVG_ENV_NEW_MASTER_KEY);
        /* Step 1: record the next key beside the current one. */
        randombytes_buf(kr->next, PVG_KEY_BYTES);
        pvg_status st = write_keyfile(path, &kc, 0, err);
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
    if (!kr->master_from_env && path) {
        kc.master = kr->next;
        kc.next = NULL;
        st = write_keyfile(path, &kc, 0, err);
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

/* ---- where the key file lives ---- */

pvg_status pvg_keys_store_id(const char *dir, int create, char out[2 * PVG_STORE_ID_BYTES + 1],
                             pvg_error *err)
{
    char want[2 * PVG_STORE_ID_BYTES + 1];
    snprintf(want, sizeof want, "%s", create == 2 ? out : "");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, PVG_STORE_ID_FILE);
    out[0] = '\0';
    FILE *f = NULL;
    pvg_status ost = pvg_datafile_fopen(path, "r", &f, err); /* never through a link */
    if (ost != PVG_OK && ost != PVG_ERR_NOT_FOUND) return ost;
    if (f) {
        char line[80] = "";
        unsigned char bin[PVG_STORE_ID_BYTES];
        size_t bl = 0;
        int ok = fgets(line, sizeof line, f) != NULL;
        fclose(f);
        line[strcspn(line, "\r\n")] = '\0';
        if (!ok || strlen(line) != 2 * PVG_STORE_ID_BYTES ||
            sodium_hex2bin(bin, sizeof bin, line, strlen(line), NULL, &bl, NULL) != 0 ||
            bl != sizeof bin)
            return pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 1, 1, -1,
                                    "expected the store id: %d hex digits", 2 * PVG_STORE_ID_BYTES);
        memcpy(out, line, 2 * PVG_STORE_ID_BYTES + 1);
        return PVG_OK;
    }
    pvg_error_clear(err);
    if (!create)
        return pvg_error_set_at(err, PVG_ERR_NOT_FOUND, path, 0, 0, -1,
                                "the data dir has no store id");
    unsigned char bin[PVG_STORE_ID_BYTES];
    randombytes_buf(bin, sizeof bin);
    char txt[2 * PVG_STORE_ID_BYTES + 2];
    sodium_bin2hex(txt, sizeof txt, bin, sizeof bin);
    if (create == 2 && strlen(want) == 2 * PVG_STORE_ID_BYTES)
        memcpy(txt, want, 2 * PVG_STORE_ID_BYTES);
    memcpy(out, txt, 2 * PVG_STORE_ID_BYTES + 1);
    strcat(txt, "\n");
    int fd;
    pvg_status cst = pvg_datafile_open(path, O_WRONLY | O_CREAT | O_TRUNC, &fd, err);
    if (cst != PVG_OK) return cst;
    ssize_t w = write(fd, txt, strlen(txt));
    int bad = w != (ssize_t)strlen(txt) || fsync(fd) != 0, e = errno;
    close(fd);
    if (bad)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "write failed: %s", strerror(e));
    fsync_parent(path);
    return PVG_OK;
}

static int mkdir_p(char *path, mode_t mode)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        int rc = mkdir(path, mode);
        *p = '/';
        if (rc != 0 && errno != EEXIST) return -1;
    }
    return mkdir(path, mode) != 0 && errno != EEXIST ? -1 : 0;
}

/* 1 when `p` (a resolved path) is `dir` (resolved) or below it. */
static int is_below(const char *dir, const char *p)
{
    size_t n = strlen(dir);
    if (n == 1 && dir[0] == '/') return 1;
    return strncmp(p, dir, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

pvg_status pvg_keys_locate(const char *dir, const char *store_id, const char *key_file,
                           int make_dirs, char *out, size_t cap, pvg_error *err)
{
    char want[4096];
    int is_default = 0;
    if (!key_file || !*key_file) key_file = getenv(PVG_ENV_KEY_FILE);
    if (key_file && *key_file) {
        snprintf(want, sizeof want, "%s", key_file);
    } else {
        if (!store_id || !*store_id)
            return pvg_error_set_at(
                err, PVG_ERR_NOT_FOUND, dir, 0, 0, -1,
                "the data dir has no %s, so its key file cannot be found by default: "
                "give --key-file or %s",
                PVG_STORE_ID_FILE, PVG_ENV_KEY_FILE);
        const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
        if (xdg && xdg[0] == '/')
            snprintf(want, sizeof want, "%s/privguide/%s.key", xdg, store_id);
        else if (home && home[0] == '/')
            snprintf(want, sizeof want, "%s/.config/privguide/%s.key", home, store_id);
        else
            return pvg_error_set(
                err, PVG_ERR_NOT_FOUND,
                "neither XDG_CONFIG_HOME nor HOME is set, so there is no default place "
                "for the key file: give --key-file or %s",
                PVG_ENV_KEY_FILE);
        is_default = 1;
    }
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", want);
    char *slash = strrchr(parent, '/');
    const char *base = slash ? slash + 1 : want;
    if (!*base)
        return pvg_error_set_at(err, PVG_ERR_INVALID, want, 0, 0, -1,
                                "the key file path names a directory");
    if (slash == parent)
        parent[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(parent, sizeof parent, ".");
    if (is_default && make_dirs && mkdir_p(parent, 0700) != 0)
        return pvg_error_set_at(err, PVG_ERR_IO, parent, 0, 0, -1,
                                "cannot create the key file's directory: %s", strerror(errno));
    char rdir[PATH_MAX], rparent[PATH_MAX], rfile[PATH_MAX];
    if (!realpath(dir, rdir))
        return pvg_error_set_at(err, PVG_ERR_IO, dir, 0, 0, -1, "cannot resolve the data dir: %s",
                                strerror(errno));
    if (!realpath(parent, rparent))
        return pvg_error_set_at(err, errno == ENOENT ? PVG_ERR_NOT_FOUND : PVG_ERR_IO, parent, 0, 0,
                                -1, "the key file's directory: %s", strerror(errno));
    int n = snprintf(out, cap, "%s%s%s", rparent, strcmp(rparent, "/") == 0 ? "" : "/", base);
    if (n < 0 || (size_t)n >= cap)
        return pvg_error_set_at(err, PVG_ERR_INVALID, want, 0, 0, -1, "path too long");
    /* A key file inside the data dir would travel with every copy of it. */
    if (is_below(rdir, out) || (realpath(out, rfile) && is_below(rdir, rfile)))
        return pvg_error_set_at(
            err, PVG_ERR_INVALID, want, 0, 0, -1,
            "the key file must not be inside the data dir %s: every copy or backup of "
            "the data would carry the keys; put it elsewhere (for instance the default, "
            "$XDG_CONFIG_HOME/privguide/ or ~/.config/privguide/)",
            rdir);
    return PVG_OK;
}

pvg_status pvg_store_key_file(const char *dir, const char *key_file, char *out, size_t cap,
                              pvg_error *err)
{
    char sid[2 * PVG_STORE_ID_BYTES + 1];
    pvg_status st = pvg_keys_store_id(dir, 0, sid, err);
    if (st == PVG_ERR_NOT_FOUND) {
        pvg_error_clear(err);
        sid[0] = '\0';
    } else if (st != PVG_OK) {
        return st;
    }
    return pvg_keys_locate(dir, sid, key_file, 0, out, cap, err);
}

/* Overwrites a file with random bytes, syncs, unlinks it and syncs its
 * directory (best effort against recovery: copy-on-write file systems and
 * flash may keep the old blocks). */
static pvg_status shred_file(const char *path, pvg_error *err)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open: %s",
                                strerror(errno));
    struct stat sb;
    unsigned char junk[512];
    int ok = fstat(fd, &sb) == 0;
    for (off_t done = 0; ok && done < sb.st_size;) {
        size_t k =
            (size_t)(sb.st_size - done) < sizeof junk ? (size_t)(sb.st_size - done) : sizeof junk;
        randombytes_buf(junk, k);
        ssize_t w = write(fd, junk, k);
        if (w <= 0)
            ok = 0;
        else
            done += w;
    }
    if (ok && fsync(fd) != 0) ok = 0;
    int e = errno;
    close(fd);
    if (!ok)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot overwrite: %s",
                                strerror(e));
    if (unlink(path) != 0)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot remove: %s",
                                strerror(errno));
    fsync_parent(path);
    return PVG_OK;
}

pvg_status pvg_store_keys_move(const char *dir, const char *key_file, char *moved_to, size_t cap,
                               pvg_error *err)
{
    pvg_status st = pvg_init();
    if (st != PVG_OK) return pvg_error_set(err, st, "the system random generator is unavailable");
    if (!pvg_backend_exists(dir))
        return pvg_error_set_at(err, PVG_ERR_NOT_FOUND, dir, 0, 0, -1, "no privguide store here");
    char old[4096];
    snprintf(old, sizeof old, "%s/%s", dir, PVG_LEGACY_KEY_FILE);
    pvg_keyring kr;
    st = pvg_keys_load(old, &kr, err);
    if (st == PVG_ERR_NOT_FOUND)
        return pvg_error_set_at(err, PVG_ERR_NOT_FOUND, old, 0, 0, -1,
                                "no key file inside the data dir: nothing to move");
    if (st != PVG_OK) return st;
    char sid[2 * PVG_STORE_ID_BYTES + 1];
    memcpy(sid, kr.store_id, sizeof sid); /* a file that names its store keeps that id */
    pvg_keys_free(&kr);
    /* The file's own text goes over (it may say "master env"), with the
     * store id and, when there is an audit log, where its unkeyed part ends. */
    char *text = sodium_malloc(8192);
    if (!text) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    int fd = open(old, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, text, 4095) : -1;
    if (fd >= 0) close(fd);
    char path[4096];
    pvg_backend *be = NULL;
    char named[2 * PVG_STORE_ID_BYTES + 1];
    memcpy(named, sid, sizeof named);
    if (n < 0) {
        st = pvg_error_set_at(err, PVG_ERR_IO, old, 0, 0, -1, "read failed: %s", strerror(errno));
        goto done;
    }
    text[n] = '\0';
    if (n && text[n - 1] != '\n') strcat(text, "\n");
    st = pvg_keys_store_id(dir, 2, sid, err);
    if (st == PVG_OK && named[0] && strcmp(named, sid) != 0)
        st = pvg_error_set_at(err, PVG_ERR_INVALID, old, 0, 0, -1,
                              "this key file belongs to store %s, but the data dir is store %s",
                              named, sid);
    if (st == PVG_OK) st = pvg_keys_locate(dir, sid, key_file, 1, path, sizeof path, err);
    if (st == PVG_OK) st = pvg_backend_open(dir, &be, err);
    int64_t seq = 0;
    unsigned char hash[32];
    int found = 0;
    if (st == PVG_OK) st = be->ops->audit_head(be, &seq, hash, &found, err);
    if (be) be->ops->close(be);
    if (st != PVG_OK) goto done;
    size_t len = strlen(text);
    if (!strstr(text, "\nstore "))
        len += (size_t)snprintf(text + len, 8192 - len, "store %s\n", sid);
    if (found && seq > 0 && !strstr(text, "\naudit-unkeyed ")) {
        char hex[65];
        sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
        len += (size_t)snprintf(text + len, 8192 - len, "audit-unkeyed %lld %s\n", (long long)seq,
                                hex);
    }
    st = write_secret_file(path, text, len, 1, err);
    if (st == PVG_ERR_EXISTS) {
        /* An earlier move stopped before removing the old file: go on when
         * the file there is the one it wrote. */
        char *there = sodium_malloc(8192);
        int same = 0;
        int tfd = there ? open(path, O_RDONLY | O_CLOEXEC) : -1;
        if (tfd >= 0) {
            ssize_t tn = read(tfd, there, 8191);
            close(tfd);
            same = tn == (ssize_t)len && memcmp(there, text, len) == 0;
        }
        if (there) sodium_free(there);
        if (same) {
            pvg_error_clear(err);
            st = PVG_OK;
        }
    }
    if (st != PVG_OK) goto done;
    st = shred_file(old, err);
    if (st == PVG_OK && moved_to) snprintf(moved_to, cap, "%s", path);
done:
    sodium_free(text);
    return st;
}

/* ---- what the audit log (src/server/audit.c) uses of the keys ---- */

const unsigned char *pvg_store_audit_key(const pvg_store *s)
{
    return s->keys.audit;
}

int64_t pvg_store_audit_unkeyed(const pvg_store *s, unsigned char hash[32])
{
    if (s->keys.audit_unkeyed_seq > 0) memcpy(hash, s->keys.audit_unkeyed_hash, 32);
    return s->keys.audit_unkeyed_seq;
}
