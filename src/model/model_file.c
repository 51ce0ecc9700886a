/*
 * model_file.c - the model file format: save (atomic rename) and load by
 * mmap with full validation.
 *
 * Layout (little-endian, docs/models.md):
 *   [0, 512)    header: magic "PVGMODL\0", format version, header size,
 *               model type, user keying, shapes, file size, salt,
 *               training-data fingerprint, hyperparameters, BLAKE2b-256
 *               checksum of the whole file (computed with the checksum
 *               field zeroed)
 *   [512, 1024) section table: PVG_SEC_COUNT x {offset, length} (uint64)
 *   then the sections, each aligned to 64 bytes.
 */
#include "model/model_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODEL_MAGIC "PVGMODL"
#define MODEL_VERSION 1u
#define HEADER_BYTES 512u
#define TABLE_BYTES 512u
#define DATA_START (HEADER_BYTES + TABLE_BYTES)
#define N_HYPER 14

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
} file_header;
_Static_assert(sizeof(file_header) <= HEADER_BYTES, "header too large");
#define CHECKSUM_OFFSET offsetof(file_header, checksum)

void pvg_model_unmap(void *p, size_t len);
void pvg_model_unmap(void *p, size_t len) { munmap(p, len); }

static void hyper_pack(const pvg_train_params *p, double *h)
{
    double v[N_HYPER] = {p->factors,  p->epochs,   p->reg,         p->alpha0, p->nu,
                         p->confidence, p->cg_steps, p->lr,        p->ease_lambda,
                         p->neighbors, p->shrink,   (double)p->seed, p->init_std, p->threads};
    memcpy(h, v, sizeof v);
}

static void hyper_unpack(const double *h, pvg_model_type type, pvg_train_params *p)
{
    pvg_train_params_default(type, p);
    p->factors = (int)h[0];
    p->epochs = (int)h[1];
    p->reg = h[2];
    p->alpha0 = h[3];
    p->nu = h[4];
    p->confidence = h[5];
    p->cg_steps = (int)h[6];
    p->lr = h[7];
    p->ease_lambda = h[8];
    p->neighbors = (int)h[9];
    p->shrink = h[10];
    p->seed = (uint64_t)h[11];
    p->init_std = h[12];
    p->threads = (int)h[13];
}

static uint64_t align64(uint64_t x) { return (x + 63) & ~(uint64_t)63; }

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

pvg_status pvg_model_save(const pvg_model *m, const char *path, pvg_error *err)
{
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
    uint64_t table[PVG_SEC_COUNT][2];
    memset(table, 0, sizeof table);
    uint64_t off = DATA_START;
    for (int s = 1; s < PVG_SEC_COUNT; s++) {
        if (!m->sec[s] || m->sec_len[s] == 0) continue;
        table[s][0] = off;
        table[s][1] = m->sec_len[s];
        off = align64(off + m->sec_len[s]);
    }
    h.file_size = off;
    _Static_assert(sizeof table <= TABLE_BYTES, "table too large");
    unsigned char head[DATA_START];
    memset(head, 0, sizeof head);
    memcpy(head, &h, sizeof h);
    memcpy(head + HEADER_BYTES, table, sizeof table);
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
    crypto_generichash_final(&hs, h.checksum, 32);
    memcpy(head, &h, sizeof h);

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        pvg_status st = pvg_error_set_at(err, PVG_ERR_IO, tmp, 0, 0, -1, "cannot create: %s",
                                         strerror(errno));
        free(tmp);
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
    return PVG_OK;
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

pvg_status pvg_model_load(const char *path, pvg_model **out, pvg_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open model: %s",
                                strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot stat: %s",
                                strerror(errno));
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < DATA_START) {
        char mg[8];
        int bad_magic = size >= 8 && pread(fd, mg, 8, 0) == 8 && memcmp(mg, MODEL_MAGIC, 8) != 0;
        close(fd);
        if (bad_magic) return corrupt(err, path, 0, "not a privguide model file (bad magic)");
        return pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, (long long)size,
                                "model file: truncated: %llu bytes, the header alone needs %u",
                                (unsigned long long)size, DATA_START);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
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
    if (h.version != MODEL_VERSION) {
        st = pvg_error_set_at(err, PVG_ERR_UNSUPPORTED, path, 0, 0, 8,
                              "model file format version %u; this build reads version %u "
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
        h.n_users >= (1ull << 32) || h.n_items >= (1ull << 32) || h.factors > 8192) {
        st = corrupt(err, path, 16, "bad model type, keying or shape in the header");
        goto fail;
    }
    pvg_model *m = calloc(1, sizeof *m);
    if (!m) {
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
    hyper_unpack(h.hyper, m->type, &m->params);
    m->map = map;
    m->map_len = size;
    /* expected section sizes */
    uint64_t nu = h.n_users, ni = h.n_items, F = h.factors;
    int fac = m->type == PVG_MODEL_IALS || m->type == PVG_MODEL_BPR;
    uint64_t want[PVG_SEC_COUNT] = {0};
    want[PVG_SEC_USER_KEYS] = 16 * nu;
    want[PVG_SEC_USER_ORDER] = 4 * nu;
    want[PVG_SEC_HIST_INDPTR] = 8 * (nu + 1);
    want[PVG_SEC_HIST_ITEMS] = 4 * h.hist_nnz;
    want[PVG_SEC_HIST_W] = 4 * h.hist_nnz;
    want[PVG_SEC_ITEM_OFF] = 8 * (ni + 1);
    want[PVG_SEC_ITEM_STR] = h.item_str_len;
    want[PVG_SEC_ITEM_ORDER] = 4 * ni;
    want[PVG_SEC_POPULARITY] = 4 * ni;
    want[PVG_SEC_USER_F] = fac ? 4 * nu * F : 0;
    want[PVG_SEC_ITEM_F] = fac ? 4 * ni * F : 0;
    want[PVG_SEC_GRAM] = fac ? 4 * F * F : 0;
    want[PVG_SEC_ITEM_F16] = fac ? 2 * ((ni + 7) / 8 * 8) * F : 0;
    want[PVG_SEC_EASE_B] = m->type == PVG_MODEL_EASE ? 4 * ni * ni : 0;
    int knn = m->type == PVG_MODEL_ITEMKNN;
    want[PVG_SEC_KNN_INDPTR] = knn ? 8 * (ni + 1) : 0;
    want[PVG_SEC_KNN_IDX] = knn ? 4 * h.knn_nnz : 0;
    want[PVG_SEC_KNN_SIM] = knn ? 4 * h.knn_nnz : 0;
    if (fac && F == 0) {
        pvg_model_free(m);
        return corrupt(err, path, 16, "factor model without factors");
    }
    const uint64_t *table = (const uint64_t *)(base + HEADER_BYTES);
    for (int s = 1; s < PVG_SEC_COUNT; s++) {
        uint64_t o = table[2 * s], l = table[2 * s + 1];
        long long toff = HEADER_BYTES + 16 * s;
        if (l != want[s]) {
            char msg[120];
            snprintf(msg, sizeof msg, "section %d has %llu bytes, its shape needs %llu", s,
                     (unsigned long long)l, (unsigned long long)want[s]);
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
    pvg_model_bind(m);
    /* structural checks: every index in range, offsets monotone */
    const char *bad = NULL;
    if (check_indptr(m->hist_indptr, nu, h.hist_nnz) || check_below(m->hist_items, h.hist_nnz, ni))
        bad = "user histories out of range";
    else if (check_below(m->user_order, nu, nu) || check_below(m->item_order, ni, ni))
        bad = "user or item order out of range";
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
