/*
 * model_file.c - the model file format: save (atomic rename), load by mmap
 * with full validation, the sealing of per-shopper sections, and the
 * removal of one shopper from model files on disk (erasure).
 *
 * Layout (little-endian, docs/models.md):
 *   [0, 512)    header: magic "PVGMODL\0", format version, header size,
 *               model type, user keying, shapes, file size, salt,
 *               training-data fingerprint, hyperparameters, BLAKE2b-256
 *               checksum of the whole file (computed with the checksum
 *               field zeroed); version 2 adds flags, the model key id, a
 *               per-write seal id and the sealed blob's place
 *   [512, 1024) section table: PVG_SEC_COUNT x {offset, length} (uint64)
 *   then the sections, each aligned to 64 bytes; in a sealed file (a model
 *   trained from the store) the per-shopper sections have no table entry
 *   and live in one sealed blob after the item sections:
 *   nonce[24] | XChaCha20-Poly1305(per-shopper sections, 64-aligned) |
 *   tag[16], associated data "pvg-model-users\0" | header (checksum
 *   zeroed), which binds version, fingerprint, shapes, key id and seal id.
 */
#include "model/model_internal.h"

#include "store/store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODEL_MAGIC "PVGMODL"
#define MODEL_VERSION 2u
#define HEADER_BYTES 512u
#define TABLE_BYTES 512u
#define DATA_START (HEADER_BYTES + TABLE_BYTES)
#define N_HYPER 14
#define FLAG_SEALED 1u
#define NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define KEY_BYTES 32
static const char SEAL_CONTEXT[16] = "pvg-model-users";

typedef struct file_header {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;
    uint32_t type;
    uint32_t keying;
    uint64_t n_users, n_items, factors, hist_nnz, knn_nnz, item_str_len;
    uint64_t file_size;
    unsigned char salt[16];
    unsigned char fingerprint[32];
    double hyper[N_HYPER];
    unsigned char checksum[32];
    /* version 2 (zero in version-1 files) */
    uint32_t flags;
    uint32_t reserved;
    unsigned char key_id[16];  /* BLAKE2b-128 of the model key (names it, reveals nothing) */
    unsigned char seal_id[16]; /* random, new at every write */
    uint64_t sealed_off, sealed_len;
} file_header;
_Static_assert(sizeof(file_header) <= HEADER_BYTES, "header too large");
#define CHECKSUM_OFFSET offsetof(file_header, checksum)

void pvg_model_unmap(void *p, size_t len);
void pvg_model_unmap(void *p, size_t len) { munmap(p, len); }

int pvg_model_section_is_user(int sec)
{
    return sec == PVG_SEC_USER_KEYS || sec == PVG_SEC_USER_ORDER || sec == PVG_SEC_HIST_INDPTR ||
           sec == PVG_SEC_HIST_ITEMS || sec == PVG_SEC_HIST_W || sec == PVG_SEC_USER_F;
}

static void hyper_pack(const pvg_train_params *p, double *h)
{
    double v[N_HYPER] = {p->factors,  p->epochs,   p->reg,         p->alpha0, p->nu,
                         p->confidence, p->cg_steps, p->lr,        p->ease_lambda,
                         p->neighbors, p->shrink,   (double)p->seed, p->init_std, p->threads};
    memcpy(h, v, sizeof v);
}

/* An integer hyperparameter read from a file: finite and within [lo, hi],
 * checked before the conversion (an out-of-range double -> int conversion is
 * undefined behaviour). */
static int hyper_int(double v, double lo, double hi, int *out)
{
    if (!(v >= lo && v <= hi)) return -1; /* also NaN */
    *out = (int)v;
    return 0;
}

/* The header's hyperparameters into *p; the name of the first one out of
 * range (or not finite) on failure, else NULL. */
static const char *hyper_unpack(const double *h, pvg_model_type type, pvg_train_params *p)
{
    pvg_train_params_default(type, p);
    for (int i = 0; i < N_HYPER; i++)
        if (!isfinite(h[i])) return "a hyperparameter is not finite";
    if (hyper_int(h[0], 0, 1 << 20, &p->factors)) return "factors out of range";
    if (hyper_int(h[1], 0, 1e7, &p->epochs)) return "epochs out of range";
    if (hyper_int(h[6], 0, 1e6, &p->cg_steps)) return "cg_steps out of range";
    if (hyper_int(h[9], 0, 1e9, &p->neighbors)) return "neighbors out of range";
    if (hyper_int(h[13], 0, 1 << 16, &p->threads)) return "threads out of range";
    /* 2^64 itself is not representable as uint64_t */
    if (!(h[11] >= 0 && h[11] < 18446744073709551616.0)) return "seed out of range";
    p->seed = (uint64_t)h[11];
    /* weights, rates and scales are never negative */
    static const int nonneg[] = {2, 3, 5, 7, 8, 10, 12};
    static const char *const nonneg_name[] = {
        "reg out of range (negative)",    "alpha0 out of range (negative)",
        "confidence out of range (negative)", "lr out of range (negative)",
        "ease_lambda out of range (negative)", "shrink out of range (negative)",
        "init_std out of range (negative)"};
    for (size_t i = 0; i < sizeof nonneg / sizeof *nonneg; i++)
        if (h[nonneg[i]] < 0) return nonneg_name[i];
    p->reg = h[2];
    p->alpha0 = h[3];
    p->nu = h[4];
    p->confidence = h[5];
    p->lr = h[7];
    p->ease_lambda = h[8];
    p->shrink = h[10];
    p->init_std = h[12];
    return NULL;
}

static uint64_t align64(uint64_t x) { return (x + 63) & ~(uint64_t)63; }

static void key_id_of(const unsigned char key[KEY_BYTES], unsigned char id[16])
{
    crypto_generichash(id, 16, (const unsigned char *)"pvg-model-key-id", 16, key, KEY_BYTES);
}

/* Section lengths the header's shapes require. */
static void section_lengths(uint32_t type, uint64_t nu, uint64_t ni, uint64_t F, uint64_t hist_nnz,
                            uint64_t knn_nnz, uint64_t item_str_len, uint64_t want[PVG_SEC_COUNT])
{
    int fac = type == PVG_MODEL_IALS || type == PVG_MODEL_BPR;
    int knn = type == PVG_MODEL_ITEMKNN;
    memset(want, 0, PVG_SEC_COUNT * sizeof *want);
    want[PVG_SEC_USER_KEYS] = 16 * nu;
    want[PVG_SEC_USER_ORDER] = 4 * nu;
    want[PVG_SEC_HIST_INDPTR] = 8 * (nu + 1);
    want[PVG_SEC_HIST_ITEMS] = 4 * hist_nnz;
    want[PVG_SEC_HIST_W] = 4 * hist_nnz;
    want[PVG_SEC_ITEM_OFF] = 8 * (ni + 1);
    want[PVG_SEC_ITEM_STR] = item_str_len;
    want[PVG_SEC_ITEM_ORDER] = 4 * ni;
    want[PVG_SEC_POPULARITY] = 4 * ni;
    want[PVG_SEC_USER_F] = fac ? 4 * nu * F : 0;
    want[PVG_SEC_ITEM_F] = fac ? 4 * ni * F : 0;
    want[PVG_SEC_GRAM] = fac ? 4 * F * F : 0;
    want[PVG_SEC_ITEM_F16] = fac ? 2 * ((ni + 7) / 8 * 8) * F : 0;
    want[PVG_SEC_EASE_B] = type == PVG_MODEL_EASE ? 4 * ni * ni : 0;
    want[PVG_SEC_KNN_INDPTR] = knn ? 8 * (ni + 1) : 0;
    want[PVG_SEC_KNN_IDX] = knn ? 4 * knn_nnz : 0;
    want[PVG_SEC_KNN_SIM] = knn ? 4 * knn_nnz : 0;
}

/* Offsets of the per-shopper sections inside the sealed blob's plaintext;
 * returns its length (a multiple of 64). */
static uint64_t user_layout(const uint64_t want[PVG_SEC_COUNT], uint64_t off[PVG_SEC_COUNT])
{
    uint64_t o = 0;
    for (int s = 1; s < PVG_SEC_COUNT; s++) {
        off[s] = 0;
        if (!pvg_model_section_is_user(s) || !want[s]) continue;
        off[s] = o;
        o = align64(o + want[s]);
    }
    return o;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* ---- directory helpers ------------------------------------------------- */

/* The directory of path, into buf. */
static void dir_of(const char *path, char *buf, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(buf, len, ".");
    else if (slash == path)
        snprintf(buf, len, "/");
    else
        snprintf(buf, len, "%.*s", (int)(slash - path), path);
}

/* Every writer of model files in a directory (save, erase) holds an
 * exclusive flock on the directory, so a save and an erasure, or two
 * erasures, never overwrite each other's result. Returns the fd or -1. */
static pvg_status dir_lock(const char *dir, int *fd_out, pvg_error *err)
{
    *fd_out = -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return pvg_error_set_at(err, PVG_ERR_IO, dir, 0, 0, -1,
                                "cannot open the model directory: %s", strerror(errno));
    while (flock(fd, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        pvg_status st = pvg_error_set_at(err, PVG_ERR_IO, dir, 0, 0, -1,
                                         "cannot lock the model directory: %s", strerror(errno));
        close(fd);
        return st;
    }
    *fd_out = fd;
    return PVG_OK;
}

static void dir_unlock(int fd)
{
    if (fd < 0) return;
    flock(fd, LOCK_UN);
    close(fd);
}

/* ---- writing ------------------------------------------------------------- */

/* Writes m to path (temp file, fsync, rename, fsync of the directory); the
 * caller holds the directory lock. key non-NULL: the per-shopper sections
 * are sealed under it. */
static pvg_status model_write(const pvg_model *m, const char *path, const unsigned char *key,
                              pvg_error *err)
{
    if (m->users_locked)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "the per-shopper sections of this model are still sealed: open them "
                             "with pvg_model_unseal before saving");
    if (m->keying == PVG_KEY_STORE_PSEUDONYM && !key)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "this model is keyed by store pseudonyms but carries no store link: "
                             "its per-shopper sections would be written in plaintext (train it "
                             "from pvg_dataset_load_store or open it with pvg_model_load_store)");
    file_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, MODEL_MAGIC, 8);
    h.version = MODEL_VERSION;
    h.header_bytes = HEADER_BYTES;
    h.type = (uint32_t)m->type;
    h.keying = (uint32_t)m->keying;
    h.n_users = m->n_users;
    h.n_items = m->n_items;
    h.factors = m->factors;
    h.hist_nnz = m->hist_nnz;
    h.knn_nnz = m->knn_nnz;
    h.item_str_len = m->item_str_len;
    memcpy(h.salt, m->salt, 16);
    memcpy(h.fingerprint, m->fingerprint, 32);
    hyper_pack(&m->params, h.hyper);
    int sealed = key != NULL;
    uint64_t want[PVG_SEC_COUNT], uoff[PVG_SEC_COUNT], plain_len = 0;
    if (sealed) {
        h.flags = FLAG_SEALED;
        key_id_of(key, h.key_id);
        randombytes_buf(h.seal_id, sizeof h.seal_id);
        section_lengths(h.type, h.n_users, h.n_items, h.factors, h.hist_nnz, h.knn_nnz,
                        h.item_str_len, want);
        plain_len = user_layout(want, uoff);
        for (int s = 1; s < PVG_SEC_COUNT; s++)
            if (pvg_model_section_is_user(s) && want[s] != (m->sec[s] ? m->sec_len[s] : 0))
                return pvg_error_set(err, PVG_ERR_INTERNAL,
                                     "model section %d has %llu bytes, its shape needs %llu", s,
                                     (unsigned long long)m->sec_len[s],
                                     (unsigned long long)want[s]);
    }
    uint64_t table[PVG_SEC_COUNT][2];
    memset(table, 0, sizeof table);
    uint64_t off = DATA_START;
    for (int s = 1; s < PVG_SEC_COUNT; s++) {
        if (!m->sec[s] || m->sec_len[s] == 0) continue;
        if (sealed && pvg_model_section_is_user(s)) continue;
        table[s][0] = off;
        table[s][1] = m->sec_len[s];
        off = align64(off + m->sec_len[s]);
    }
    unsigned char *blob = NULL;
    if (sealed) {
        h.sealed_off = off;
        h.sealed_len = NONCE_BYTES + plain_len + TAG_BYTES;
        off = align64(off + h.sealed_len);
    }
    h.file_size = off;
    _Static_assert(sizeof table <= TABLE_BYTES, "table too large");
    unsigned char head[DATA_START];
    memset(head, 0, sizeof head);
    memcpy(head, &h, sizeof h);
    memcpy(head + HEADER_BYTES, table, sizeof table);
    if (sealed) {
        /* the per-shopper sections, in order, 64-aligned, encrypted in place
         * (the plaintext copy lives only until the cipher overwrites it) */
        blob = calloc(1, h.sealed_len);
        if (!blob)
            return pvg_error_set(err, PVG_ERR_NOMEM, "model: out of memory sealing %llu bytes",
                                 (unsigned long long)plain_len);
        unsigned char *plain = blob + NONCE_BYTES;
        for (int s = 1; s < PVG_SEC_COUNT; s++)
            if (pvg_model_section_is_user(s) && want[s])
                memcpy(plain + uoff[s], m->sec[s], want[s]);
        unsigned char ad[sizeof SEAL_CONTEXT + HEADER_BYTES];
        memcpy(ad, SEAL_CONTEXT, sizeof SEAL_CONTEXT);
        memcpy(ad + sizeof SEAL_CONTEXT, head, HEADER_BYTES); /* checksum still zero */
        randombytes_buf(blob, NONCE_BYTES);
        crypto_aead_xchacha20poly1305_ietf_encrypt(plain, NULL, plain, plain_len, ad, sizeof ad,
                                                   NULL, blob, key);
    }
    /* checksum over header (checksum zeroed), table, sections and padding */
    static const unsigned char zeros[64];
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, 32);
    crypto_generichash_update(&hs, head, sizeof head);
    uint64_t pos = DATA_START;
    for (int s = 1; s < PVG_SEC_COUNT; s++) {
        if (!table[s][1]) continue;
        crypto_generichash_update(&hs, m->sec[s], m->sec_len[s]);
        pos += m->sec_len[s];
        crypto_generichash_update(&hs, zeros, align64(pos) - pos);
        pos = align64(pos);
    }
    if (sealed) {
        crypto_generichash_update(&hs, blob, h.sealed_len);
        pos += h.sealed_len;
        crypto_generichash_update(&hs, zeros, align64(pos) - pos);
        pos = align64(pos);
    }
    crypto_generichash_final(&hs, h.checksum, 32);
    memcpy(head, &h, sizeof h);

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 12);
    if (!tmp) {
        free(blob);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp); /* 0600, a name no concurrent writer shares */
    if (fd < 0) {
        pvg_status st = pvg_error_set_at(err, PVG_ERR_IO, tmp, 0, 0, -1, "cannot create: %s",
                                         strerror(errno));
        free(tmp);
        free(blob);
        return st;
    }
    int bad = write_all(fd, head, sizeof head);
    pos = DATA_START;
    for (int s = 1; s < PVG_SEC_COUNT && !bad; s++) {
        if (!table[s][1]) continue;
        bad = write_all(fd, m->sec[s], m->sec_len[s]);
        pos += m->sec_len[s];
        if (!bad) bad = write_all(fd, zeros, align64(pos) - pos);
        pos = align64(pos);
    }
    if (sealed && !bad) {
        bad = write_all(fd, blob, h.sealed_len);
        pos += h.sealed_len;
        if (!bad) bad = write_all(fd, zeros, align64(pos) - pos);
    }
    free(blob);
    if (!bad) bad = fsync(fd);
    if (close(fd) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        pvg_status st = pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot write: %s",
                                         strerror(errno));
        unlink(tmp);
        free(tmp);
        return st;
    }
    free(tmp);
    /* the rename is durable once the directory is */
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return PVG_OK;
}

pvg_status pvg_model_save(const pvg_model *m, const char *path, pvg_error *err)
{
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    int lk;
    pvg_status st = dir_lock(dir, &lk, err);
    if (st != PVG_OK) return st;
    st = model_write(m, path, m->model_key, err);
    dir_unlock(lk);
    return st;
}

static pvg_status corrupt(pvg_error *err, const char *path, long long off, const char *what)
{
    return pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, off, "model file: %s", what);
}

static int check_indptr(const uint64_t *p, uint64_t n, uint64_t nnz)
{
    if (p[0] != 0 || p[n] != nnz) return -1;
    for (uint64_t i = 0; i < n; i++)
        if (p[i + 1] < p[i]) return -1;
    return 0;
}

static int check_below(const uint32_t *a, uint64_t n, uint64_t bound)
{
    for (uint64_t i = 0; i < n; i++)
        if (a[i] >= bound) return -1;
    return 0;
}

/* Structural checks of the per-shopper sections (once they are readable). */
static const char *check_users(const pvg_model *m)
{
    if (check_indptr(m->hist_indptr, m->n_users, m->hist_nnz) ||
        check_below(m->hist_items, m->hist_nnz, m->n_items))
        return "user histories out of range";
    if (check_below(m->user_order, m->n_users, m->n_users)) return "user order out of range";
    /* the user lookup is a binary search over the sorted keys */
    for (uint64_t j = 1; j < m->n_users; j++)
        if (memcmp(m->user_keys + 16 * (j - 1), m->user_keys + 16 * j, 16) >= 0)
            return "user keys are not strictly sorted";
    return NULL;
}

/* Maps and validates the model file open on fd (path for messages). */
static pvg_status model_map_fd(int fd, const char *path, pvg_model **out, pvg_error *err)
{
    *out = NULL;
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot stat: %s",
                                strerror(errno));
    uint64_t size = (uint64_t)sb.st_size;
    if (size < DATA_START) {
        char mg[8];
        int bad_magic = size >= 8 && pread(fd, mg, 8, 0) == 8 && memcmp(mg, MODEL_MAGIC, 8) != 0;
        if (bad_magic) return corrupt(err, path, 0, "not a privguide model file (bad magic)");
        return pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, (long long)size,
                                "model file: truncated: %llu bytes, the header alone needs %u",
                                (unsigned long long)size, DATA_START);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot map: %s",
                                strerror(errno));
    const unsigned char *base = map;
    file_header h;
    memcpy(&h, base, sizeof h);
    pvg_status st = PVG_OK;
    if (memcmp(h.magic, MODEL_MAGIC, 8) != 0) {
        st = corrupt(err, path, 0, "not a privguide model file (bad magic)");
        goto fail;
    }
    if (h.version != MODEL_VERSION && h.version != 1) {
        st = pvg_error_set_at(err, PVG_ERR_UNSUPPORTED, path, 0, 0, 8,
                              "model file format version %u; this build reads versions 1 and %u "
                              "(retrain the model)",
                              h.version, MODEL_VERSION);
        goto fail;
    }
    if (h.header_bytes != HEADER_BYTES) {
        st = corrupt(err, path, 12, "bad header size");
        goto fail;
    }
    if (h.file_size != size) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: the header says %llu bytes, the file has %llu",
                 size < h.file_size ? "truncated" : "trailing data",
                 (unsigned long long)h.file_size, (unsigned long long)size);
        st = pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, (long long)size, "model file: %s",
                              msg);
        goto fail;
    }
    {
        unsigned char head[DATA_START], sum[32];
        memcpy(head, base, DATA_START);
        memset(head + CHECKSUM_OFFSET, 0, 32);
        crypto_generichash_state hs;
        crypto_generichash_init(&hs, NULL, 0, 32);
        crypto_generichash_update(&hs, head, DATA_START);
        crypto_generichash_update(&hs, base + DATA_START, size - DATA_START);
        crypto_generichash_final(&hs, sum, 32);
        if (sodium_memcmp(sum, h.checksum, 32) != 0) {
            st = corrupt(err, path, (long long)CHECKSUM_OFFSET,
                         "checksum mismatch (the file is corrupted or was modified)");
            goto fail;
        }
    }
    if (h.type < PVG_MODEL_POPULARITY || h.type > PVG_MODEL_BPR ||
        (h.keying != PVG_KEY_SALTED_HASH && h.keying != PVG_KEY_STORE_PSEUDONYM) ||
        h.n_users >= (1ull << 32) || h.n_items >= (1ull << 32) || h.factors > 8192 ||
        h.hist_nnz >= (1ull << 40) || h.knn_nnz >= (1ull << 40) || h.item_str_len >= (1ull << 40)) {
        st = corrupt(err, path, 16, "bad model type, keying or shape in the header");
        goto fail;
    }
    int sealed = (h.flags & FLAG_SEALED) != 0;
    if ((h.flags & ~FLAG_SEALED) || (sealed && h.keying != PVG_KEY_STORE_PSEUDONYM) ||
        (!sealed && (h.sealed_off || h.sealed_len))) {
        st = corrupt(err, path, (long long)offsetof(file_header, flags),
                     "bad flags: only a store-keyed model has a sealed section");
        goto fail;
    }
    pvg_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    m->type = (pvg_model_type)h.type;
    m->keying = (pvg_user_keying)h.keying;
    memcpy(m->salt, h.salt, 16);
    memcpy(m->fingerprint, h.fingerprint, 32);
    m->n_users = h.n_users;
    m->n_items = h.n_items;
    m->factors = h.factors;
    m->hist_nnz = h.hist_nnz;
    m->knn_nnz = h.knn_nnz;
    m->item_str_len = h.item_str_len;
    const char *bad_hyper = hyper_unpack(h.hyper, m->type, &m->params);
    m->map = map;
    m->map_len = size;
    if (bad_hyper) {
        pvg_model_free(m);
        return corrupt(err, path, (long long)offsetof(file_header, hyper), bad_hyper);
    }
    /* expected section sizes */
    uint64_t nu = h.n_users, ni = h.n_items, F = h.factors;
    int fac = m->type == PVG_MODEL_IALS || m->type == PVG_MODEL_BPR;
    int knn = m->type == PVG_MODEL_ITEMKNN;
    uint64_t want[PVG_SEC_COUNT], uoff[PVG_SEC_COUNT];
    section_lengths(h.type, nu, ni, F, h.hist_nnz, h.knn_nnz, h.item_str_len, want);
    if (fac && F == 0) {
        pvg_model_free(m);
        return corrupt(err, path, 16, "factor model without factors");
    }
    const uint64_t *table = (const uint64_t *)(base + HEADER_BYTES);
    for (int s = 1; s < PVG_SEC_COUNT; s++) {
        uint64_t o = table[2 * s], l = table[2 * s + 1];
        long long toff = HEADER_BYTES + 16 * s;
        uint64_t w = sealed && pvg_model_section_is_user(s) ? 0 : want[s];
        if (l != w) {
            char msg[120];
            snprintf(msg, sizeof msg, "section %d has %llu bytes, its shape needs %llu", s,
                     (unsigned long long)l, (unsigned long long)w);
            pvg_model_free(m);
            return corrupt(err, path, toff, msg);
        }
        if (l == 0) continue;
        if (o < DATA_START || o % 64 || o > size || l > size - o) {
            pvg_model_free(m);
            return corrupt(err, path, toff, "section out of the file's bounds or misaligned");
        }
        m->sec[s] = base + o;
        m->sec_len[s] = l;
    }
    if (sealed) {
        uint64_t plain_len = user_layout(want, uoff);
        if (h.sealed_len != NONCE_BYTES + plain_len + TAG_BYTES || h.sealed_off < DATA_START ||
            h.sealed_off % 64 || h.sealed_off > size || h.sealed_len > size - h.sealed_off) {
            pvg_model_free(m);
            return corrupt(err, path, (long long)offsetof(file_header, sealed_off),
                           "the sealed per-shopper section does not match the header's shapes "
                           "or leaves the file");
        }
        m->sealed_file = 1;
        m->users_locked = 1;
        m->sealed = base + h.sealed_off;
        m->sealed_off = h.sealed_off;
        m->sealed_len = h.sealed_len;
        memcpy(m->sealed_header, base, HEADER_BYTES);
        memset(m->sealed_header + CHECKSUM_OFFSET, 0, 32);
        memcpy(m->key_id, h.key_id, 16);
    }
    pvg_model_bind(m);
    /* structural checks: every index in range, offsets monotone */
    const char *bad = sealed ? NULL : check_users(m);
    if (bad)
        ;
    else if (check_below(m->item_order, ni, ni))
        bad = "item order out of range";
    else if (check_indptr(m->item_off, ni, h.item_str_len) ||
             (h.item_str_len && m->item_str[h.item_str_len - 1] != 0))
        bad = "item id table malformed";
    else if (knn && (check_indptr(m->knn_indptr, ni, h.knn_nnz) ||
                     check_below(m->knn_idx, h.knn_nnz, ni)))
        bad = "neighbour lists out of range";
    if (!bad)
        for (uint64_t i = 0; i < ni; i++)
            if (m->item_off[i + 1] == m->item_off[i] || m->item_str[m->item_off[i + 1] - 1] != 0) {
                bad = "item id not NUL-terminated";
                break;
            }
    /* the lookup is a binary search over item_order: it must sort the ids
     * strictly (which also makes it a permutation of distinct ids) */
    if (!bad)
        for (uint64_t j = 1; j < ni; j++)
            if (strcmp(m->item_str + m->item_off[m->item_order[j - 1]],
                       m->item_str + m->item_off[m->item_order[j]]) >= 0) {
                bad = "item order does not sort the item ids";
                break;
            }
    if (bad) {
        pvg_model_free(m);
        return corrupt(err, path, -1, bad);
    }
    *out = m;
    return PVG_OK;
fail:
    munmap(map, size);
    return st;
}

pvg_status pvg_model_load(const char *path, pvg_model **out, pvg_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open model: %s",
                                strerror(errno));
    pvg_status st = model_map_fd(fd, path, out, err);
    close(fd);
    return st;
}

int pvg_model_is_sealed(const pvg_model *m)
{
    return m->sealed_file || m->keying == PVG_KEY_STORE_PSEUDONYM;
}

/* Attaches a copy of the store's model key to m (its store link). */
static pvg_status attach_key(pvg_model *m, pvg_store *store, pvg_error *err)
{
    if (m->model_key) return PVG_OK;
    unsigned char *key = sodium_malloc(KEY_BYTES);
    if (!key) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    pvg_status st = pvg_store_model_key(store, key);
    if (st != PVG_OK) {
        sodium_free(key);
        return pvg_error_set(err, st, "the store cannot derive its model key");
    }
    m->model_key = key;
    return PVG_OK;
}

pvg_status pvg_model_unseal(pvg_model *m, pvg_store *store, pvg_error *err)
{
    if (!m || !store) return pvg_error_set(err, PVG_ERR_INVALID, "unseal: NULL model or store");
    if (m->keying != PVG_KEY_STORE_PSEUDONYM) return PVG_OK; /* trained from a file: no link */
    pvg_status st = attach_key(m, store, err);
    if (st != PVG_OK || !m->users_locked) return st;
    const char *path = m->path ? m->path : "model";
    unsigned char id[16];
    key_id_of(m->model_key, id);
    if (sodium_memcmp(id, m->key_id, 16) != 0) {
        char want[17], have[17];
        sodium_bin2hex(want, sizeof want, m->key_id, 8);
        sodium_bin2hex(have, sizeof have, id, 8);
        sodium_free(m->model_key);
        m->model_key = NULL;
        return pvg_error_set_at(err, PVG_ERR_CRYPTO, path, 0, 0,
                                (long long)offsetof(file_header, key_id),
                                "model file: its per-shopper section is sealed under model key "
                                "%s, this store's model key is %s: the model was trained from "
                                "another store, or the master key was rotated since (retrain it)",
                                want, have);
    }
    uint64_t want[PVG_SEC_COUNT], uoff[PVG_SEC_COUNT];
    section_lengths(m->type, m->n_users, m->n_items, m->factors, m->hist_nnz, m->knn_nnz,
                    m->item_str_len, want);
    uint64_t plain_len = user_layout(want, uoff);
    unsigned char *plain = sodium_malloc(plain_len ? plain_len : 64);
    if (!plain) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory unsealing %llu bytes",
                                     (unsigned long long)plain_len);
    unsigned char ad[sizeof SEAL_CONTEXT + HEADER_BYTES];
    memcpy(ad, SEAL_CONTEXT, sizeof SEAL_CONTEXT);
    memcpy(ad + sizeof SEAL_CONTEXT, m->sealed_header, HEADER_BYTES);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, m->sealed + NONCE_BYTES,
                                                   m->sealed_len - NONCE_BYTES, ad, sizeof ad,
                                                   m->sealed, m->model_key) != 0) {
        sodium_free(plain);
        return pvg_error_set_at(err, PVG_ERR_CRYPTO, path, 0, 0, (long long)m->sealed_off,
                                "model file: the sealed per-shopper section failed "
                                "authentication (it was modified, or moved from another file)");
    }
    m->users_mem = plain;
    m->users_mem_len = plain_len;
    for (int s = 1; s < PVG_SEC_COUNT; s++)
        if (pvg_model_section_is_user(s) && want[s]) {
            m->sec[s] = plain + uoff[s];
            m->sec_len[s] = want[s];
        }
    m->users_locked = 0;
    pvg_model_bind(m);
    const char *bad = check_users(m);
    if (bad) return corrupt(err, path, (long long)m->sealed_off, bad);
    return PVG_OK;
}

pvg_status pvg_model_load_store(const char *path, pvg_store *store, pvg_model **out,
                                pvg_error *err)
{
    pvg_status st = pvg_model_load(path, out, err);
    if (st != PVG_OK) return st;
    st = pvg_model_unseal(*out, store, err);
    if (st != PVG_OK) {
        pvg_model_free(*out);
        *out = NULL;
    }
    return st;
}

/* ---- erasure --------------------------------------------------------------- */

/* What erase_locked found. */
enum { ERASE_REMOVED, ERASE_ABSENT, ERASE_NOT_STORE, ERASE_OTHER_KEY };

/* A copy of m without user index u: the per-shopper sections rebuilt
 * (owned), the item sections borrowed from m. */
static pvg_status without_user(const pvg_model *m, int64_t u, pvg_model **out, pvg_error *err)
{
    *out = NULL;
    pvg_model *e = calloc(1, sizeof *e);
    if (!e) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    e->type = m->type;
    e->keying = m->keying;
    memcpy(e->salt, m->salt, 16);
    memcpy(e->fingerprint, m->fingerprint, 32);
    e->params = m->params;
    e->n_items = m->n_items;
    e->factors = m->factors;
    e->knn_nnz = m->knn_nnz;
    e->item_str_len = m->item_str_len;
    for (int s = 1; s < PVG_SEC_COUNT; s++)
        if (!pvg_model_section_is_user(s)) {
            e->sec[s] = m->sec[s];
            e->sec_len[s] = m->sec_len[s];
        }
    uint64_t nu = m->n_users, F = m->factors;
    uint64_t b = m->hist_indptr[u], len = m->hist_indptr[u + 1] - b, nnz = m->hist_nnz - len;
    unsigned char *keys = malloc(16 * (nu - 1) + 1);
    uint32_t *order = malloc(4 * (nu - 1) + 4);
    uint64_t *indptr = malloc(8 * nu);
    uint32_t *items = malloc(4 * nnz + 4);
    float *w = malloc(4 * nnz + 4);
    float *U = m->U ? malloc(4 * (nu - 1) * F + 4) : NULL;
    if (!keys || !order || !indptr || !items || !w || (m->U && !U)) {
        free(keys), free(order), free(indptr), free(items), free(w), free(U), free(e);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    uint64_t q = 0;
    for (uint64_t p = 0; p < nu; p++) {
        uint32_t o = m->user_order[p];
        if (o == (uint64_t)u) continue;
        memcpy(keys + 16 * q, m->user_keys + 16 * p, 16);
        order[q++] = o > (uint64_t)u ? o - 1 : o;
    }
    memcpy(indptr, m->hist_indptr, 8 * (size_t)u);
    for (uint64_t r = (uint64_t)u + 1; r <= nu; r++) indptr[r - 1] = m->hist_indptr[r] - len;
    memcpy(items, m->hist_items, 4 * b);
    memcpy(items + b, m->hist_items + b + len, 4 * (m->hist_nnz - b - len));
    memcpy(w, m->hist_w, 4 * b);
    memcpy(w + b, m->hist_w + b + len, 4 * (m->hist_nnz - b - len));
    if (U) {
        memcpy(U, m->U, 4 * (size_t)u * F);
        memcpy(U + (size_t)u * F, m->U + ((size_t)u + 1) * F, 4 * (nu - 1 - (uint64_t)u) * F);
    }
    e->n_users = nu - 1;
    e->hist_nnz = nnz;
    pvg_model_set_section(e, PVG_SEC_USER_KEYS, keys, 16 * (nu - 1));
    pvg_model_set_section(e, PVG_SEC_USER_ORDER, order, 4 * (nu - 1));
    pvg_model_set_section(e, PVG_SEC_HIST_INDPTR, indptr, 8 * nu);
    pvg_model_set_section(e, PVG_SEC_HIST_ITEMS, items, 4 * nnz);
    pvg_model_set_section(e, PVG_SEC_HIST_W, w, 4 * nnz);
    if (U) pvg_model_set_section(e, PVG_SEC_USER_F, U, 4 * (nu - 1) * F);
    pvg_model_bind(e);
    *out = e;
    return PVG_OK;
}

/* Overwrites [off, off+len) of the (already replaced) old file with zeros
 * and syncs it: the old bytes leave the disk blocks too, not only the
 * directory. A server that mapped the old file reads its per-shopper data
 * from its decrypted copy, never from these bytes. */
static int wipe_range(int fd, uint64_t off, uint64_t len)
{
    static const unsigned char zeros[1 << 16];
    while (len) {
        size_t n = len > sizeof zeros ? sizeof zeros : (size_t)len;
        ssize_t w = pwrite(fd, zeros, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        off += (uint64_t)w;
        len -= (uint64_t)w;
    }
    return fdatasync(fd);
}

static int64_t find_user_index(const pvg_model *m, const unsigned char key[16])
{
    size_t lo = 0, hi = m->n_users;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = memcmp(m->user_keys + 16 * mid, key, 16);
        if (c == 0) return m->user_order[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* The erasure of one file; the caller holds the directory lock. */
static pvg_status erase_locked(const char *path, pvg_store *store,
                               const unsigned char pseudonym[16], int *what, pvg_error *err)
{
    *what = ERASE_ABSENT;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open model: %s",
                                strerror(errno));
    pvg_model *m = NULL, *e = NULL;
    pvg_status st = model_map_fd(fd, path, &m, err);
    if (st == PVG_OK && m->keying != PVG_KEY_STORE_PSEUDONYM) {
        *what = ERASE_NOT_STORE;
        goto done;
    }
    if (st == PVG_OK) st = pvg_model_unseal(m, store, err);
    if (st == PVG_ERR_CRYPTO && m && m->users_locked && !m->model_key) {
        *what = ERASE_OTHER_KEY; /* unreadable with this store's key */
        goto done;
    }
    if (st != PVG_OK) goto done;
    int64_t u = find_user_index(m, pseudonym);
    if (u < 0) goto done;
    st = without_user(m, u, &e, err);
    if (st == PVG_OK) st = model_write(e, path, m->model_key, err);
    if (st != PVG_OK) goto done;
    *what = ERASE_REMOVED;
    /* the old inode is out of the directory; wipe what held the shopper */
    int bad = 0;
    if (m->sealed_file)
        bad = wipe_range(fd, m->sealed_off, m->sealed_len);
    else
        for (int s = 1; s < PVG_SEC_COUNT && !bad; s++)
            if (pvg_model_section_is_user(s) && m->sec_len[s])
                bad = wipe_range(fd, (uint64_t)((const unsigned char *)m->sec[s] -
                                                (const unsigned char *)m->map),
                                 m->sec_len[s]);
    if (bad)
        st = pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1,
                              "the shopper was removed, but the replaced file's old bytes could "
                              "not be wiped: %s",
                              strerror(errno));
done:
    pvg_model_free(e);
    pvg_model_free(m);
    close(fd);
    return st;
}

pvg_status pvg_model_file_erase_user(const char *path, pvg_store *store,
                                     const unsigned char pseudonym[16], int *removed,
                                     pvg_error *err)
{
    if (removed) *removed = 0;
    if (!path || !store || !pseudonym)
        return pvg_error_set(err, PVG_ERR_INVALID, "erase: NULL path, store or pseudonym");
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    int lk;
    pvg_status st = dir_lock(dir, &lk, err);
    if (st != PVG_OK) return st;
    int what;
    st = erase_locked(path, store, pseudonym, &what, err);
    dir_unlock(lk);
    if (st != PVG_OK) return st;
    if (what == ERASE_NOT_STORE)
        return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                "model file: trained from a file, not from a store: it holds no "
                                "store pseudonyms");
    if (what == ERASE_OTHER_KEY)
        return pvg_error_set_at(err, PVG_ERR_CRYPTO, path, 0, 0, -1,
                                "model file: sealed under another store's model key");
    if (removed) *removed = what == ERASE_REMOVED;
    return PVG_OK;
}

/* 1 when name is a temp file of model_write ("<name>.tmp.XXXXXX"). */
static int is_temp_name(const char *name)
{
    size_t n = strlen(name);
    return n > 11 && memcmp(name + n - 11, ".tmp.", 5) == 0;
}

pvg_status pvg_model_dir_erase_user(const char *dir, pvg_store *store,
                                    const unsigned char pseudonym[16], int *rewritten,
                                    pvg_error *err)
{
    if (rewritten) *rewritten = 0;
    if (!dir || !store || !pseudonym)
        return pvg_error_set(err, PVG_ERR_INVALID, "erase: NULL directory, store or pseudonym");
    int lk;
    pvg_status st = dir_lock(dir, &lk, err);
    if (st != PVG_OK) return st;
    DIR *d = opendir(dir);
    if (!d) {
        st = pvg_error_set_at(err, PVG_ERR_IO, dir, 0, 0, -1, "cannot list: %s", strerror(errno));
        dir_unlock(lk);
        return st;
    }
    pvg_status first = PVG_OK;
    struct dirent *de;
    char path[4096];
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) continue;
        struct stat sb;
        if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < DATA_START) continue;
        /* a model file is recognised by its magic, whatever its name */
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        char mg[8];
        int is_model = fd >= 0 && pread(fd, mg, 8, 0) == 8 && memcmp(mg, MODEL_MAGIC, 8) == 0;
        if (fd >= 0) close(fd);
        if (!is_model) continue;
        if (is_temp_name(de->d_name)) {
            /* left by a writer that died: writers hold the lock we hold */
            (void)unlink(path);
            continue;
        }
        int what;
        pvg_error e2;
        pvg_error_clear(&e2);
        st = erase_locked(path, store, pseudonym, &what, &e2);
        if (st == PVG_OK && what == ERASE_REMOVED && rewritten) (*rewritten)++;
        if (st != PVG_OK && first == PVG_OK) {
            first = st;
            pvg_error_set_at(err, st, path, 0, 0, e2.offset,
                             "model file still holds the shopper's rows: %s", e2.text);
        }
    }
    closedir(d);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    dir_unlock(lk);
    return first;
}
