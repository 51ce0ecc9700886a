/*
 * model_file.c - the model file format: save (atomic rename), load by mmap
 * with full validation, the sealing of per-shopper rows, where store-trained
 * model files may live, and the removal of one shopper from the model files
 * of a data dir (erasure).
 *
 * Layout (little-endian, docs/models.md):
 *   [0, 512)    header: magic "PVGMODL\0", format version, header size,
 *               model type, user keying, shapes, file size, salt,
 *               training-data fingerprint, hyperparameters, BLAKE2b-256
 *               checksum of the whole file (computed with the checksum
 *               field zeroed); version 2 adds flags, a seal id and the
 *               place of the sealed rows region; version 4 the DP record
 *               (zero: trained without DP)
 *   [512, 1024) section table: PVG_SEC_COUNT x {offset, length} (uint64)
 *   then the sections, each aligned to 64 bytes. In a sealed file (version
 *   3, a model trained from the store) the per-shopper sections have no
 *   table entry; each shopper's rows are sealed on their own, after the
 *   item sections, in the rows region:
 *     directory: n_users x {tag[16], sealed pseudonym[16], offset u64
 *                (from the region's start), history length u32, 0 u32},
 *                sorted by tag; tag = keyed BLAKE2b-128 of seal id |
 *                pseudonym, the pseudonym XChaCha20-encrypted (nonce: tag |
 *                "pvgpseud"), both under the store's directory key (a
 *                subkey of the pepper): without the key file nothing links
 *                a row to a shopper
 *     rows:      per shopper, packed in directory order: nonce[24] |
 *                XChaCha20-Poly1305(history items u32[n], weights f32[n],
 *                user factors f32[f]) | tag[16]
 *   Row key: keyed BLAKE2b-256 of "pvgmodel-row-key" | seal id under the
 *   shopper's data key (src/store/model_key.c), so erasing the shopper
 *   (destroying the data key) shreds their rows in every copy of the file.
 *   Associated data: "pvg-model-row" | seal id | pseudonym | type | n |
 *   n_items | factors.
 */
#include "model/model_internal.h"

#include "store/store_internal.h"

#include <dirent.h>
#include <limits.h>
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
#define MODEL_VERSION 4u
#define HEADER_BYTES 512u
#define TABLE_BYTES 512u
#define DATA_START (HEADER_BYTES + TABLE_BYTES)
#define N_HYPER 14
#define FLAG_SEALED 1u
#define NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define KEY_BYTES 32
#define DIR_ENTRY 48u
#define DE_OFF 32 /* offset of a directory entry's row offset */
#define DE_N 40   /* its history length */
#define ROW_OVERHEAD (NONCE_BYTES + TAG_BYTES)
#define ROW_AD_BYTES 72
static const char ROW_CONTEXT[16] = "pvg-model-row";

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
    unsigned char reserved2[16]; /* version 2: the id of a store-wide model key; 0 since 3 */
    unsigned char seal_id[16];   /* names the row keys: random per trained model */
    uint64_t sealed_off, sealed_len;
    /* version 4: the DP record (all zero: trained without DP; older files
     * read as zero) */
    double dp_epsilon, dp_delta, dp_noise_multiplier, dp_sensitivity, dp_clip;
    int32_t dp_max_items;
    uint32_t dp_vocab;
    char dp_mechanism[PVG_DP_MECHANISM_MAX];
    /* version 4, the recency record (docs/models.md "Recency"; all zero:
     * trained without the terms; files written before it read as zero) */
    int64_t rec_present;
    double rec_halflife, rec_days, rec_beta, rec_share;
    uint32_t rec_flags; /* bit 0 row norm, bit 1 unit rows, bit 2 the present from the data
                           (not recorded: rec_present 0; never on a DP model) */
    uint32_t rec_reserved;
} file_header;
_Static_assert(sizeof(file_header) <= HEADER_BYTES, "header too large");
#define CHECKSUM_OFFSET offsetof(file_header, checksum)

void pvg_model_unmap(void *p, size_t len);
void pvg_model_unmap(void *p, size_t len)
{
    munmap(p, len);
}

int pvg_model_section_is_user(int sec)
{
    return sec == PVG_SEC_USER_KEYS || sec == PVG_SEC_USER_ORDER || sec == PVG_SEC_HIST_INDPTR ||
           sec == PVG_SEC_HIST_ITEMS || sec == PVG_SEC_HIST_W || sec == PVG_SEC_USER_F;
}

static void hyper_pack(const pvg_train_params *p, double *h)
{
    double v[N_HYPER] = {p->factors,    p->epochs,       p->reg,      p->alpha0,      p->nu,
                         p->confidence, p->cg_steps,     p->lr,       p->ease_lambda, p->neighbors,
                         p->shrink,     (double)p->seed, p->init_std, p->threads};
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
        "reg out of range (negative)",         "alpha0 out of range (negative)",
        "confidence out of range (negative)",  "lr out of range (negative)",
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

/* The DP record of a version-4 header into m (NULL), or what is wrong. */
static const char *dp_unpack(const file_header *h, pvg_model *m)
{
    if (h->dp_epsilon == 0) {
        if (h->dp_delta != 0 || h->dp_noise_multiplier != 0 || h->dp_sensitivity != 0 ||
            h->dp_clip != 0 || h->dp_max_items != 0 || h->dp_vocab != 0 || h->dp_mechanism[0])
            return "DP record without an epsilon";
        return NULL;
    }
    if (!(h->dp_epsilon > 0) || isinf(h->dp_epsilon) || !(h->dp_delta >= 0 && h->dp_delta < 1) ||
        !(h->dp_noise_multiplier >= 0) || isinf(h->dp_noise_multiplier) ||
        !(h->dp_sensitivity > 0) || isinf(h->dp_sensitivity) || !(h->dp_clip >= 0) ||
        isinf(h->dp_clip) || h->dp_max_items < 1 || h->dp_vocab < PVG_DP_VOCAB_CATALOG ||
        h->dp_vocab > PVG_DP_VOCAB_SELECTED)
        return "DP record out of range";
    size_t l = strnlen(h->dp_mechanism, sizeof h->dp_mechanism);
    if (l == 0 || l == sizeof h->dp_mechanism) return "DP mechanism name missing or unterminated";
    for (size_t i = 0; i < l; i++)
        if (h->dp_mechanism[i] < 0x21 || h->dp_mechanism[i] > 0x7e)
            return "DP mechanism name not printable";
    memcpy(m->dp_mech, h->dp_mechanism, l + 1);
    m->dp.epsilon = h->dp_epsilon;
    m->dp.delta = h->dp_delta;
    m->dp.noise_multiplier = h->dp_noise_multiplier;
    m->dp.sensitivity = h->dp_sensitivity;
    m->dp.clip = h->dp_clip;
    m->dp.max_items = h->dp_max_items;
    m->dp.mechanism = m->dp_mech;
    m->dp_vocab = (pvg_dp_vocabulary)h->dp_vocab;
    return NULL;
}

/* The header's recency record into m->params, checked as the trainer
 * checks its parameters and, for DP-EASE, against what its mechanism's
 * path could record (m->dp unpacked first); an error text starting
 * "recency" and naming the field (in msg, cap bytes, or static) or NULL. */
static const char *recency_unpack(const file_header *h, pvg_model *m, char *msg, size_t cap)
{
    pvg_train_params *p = &m->params;
    if (h->rec_flags & ~7u || h->rec_reserved)
        return "recency record: unknown flags (expected bit 0, row norm, bit 1, unit rows, and "
               "bit 2, a present from the data, and a reserved word of 0)";
    int from_data = (h->rec_flags & 4u) != 0;
    if (from_data &&
        (h->rec_present != 0 || h->dp_epsilon != 0 || !(h->rec_halflife > 0 || h->rec_days > 0)))
        return "recency record: a present from the data is never recorded, nor on a DP model or "
               "without a term";
    m->rec_present_data = from_data;
    p->recency_now = h->rec_present;
    p->recency_halflife_days = h->rec_halflife;
    p->recent_pop_days = h->rec_days;
    p->recent_pop_beta = h->rec_beta;
    p->recent_pop_share = h->rec_share;
    p->recency_row_norm = (int)(h->rec_flags & 1u);
    p->recent_pop_unit = (int)(h->rec_flags >> 1 & 1u);
    pvg_error e;
    if (pvg_recency_check(p, &e) != PVG_OK) {
        snprintf(msg, cap, "recency record: %s", e.text);
        return msg;
    }
    /* the record the trainer's path could write (m->dp is unpacked) */
    return pvg_dp_ease_recency_record_check(m);
}

static uint64_t align64(uint64_t x)
{
    return (x + 63) & ~(uint64_t)63;
}

/* Columns of user factors in a row: the model's factors for factor models. */
static uint64_t row_factors(uint32_t type, uint64_t F)
{
    return type == PVG_MODEL_IALS || type == PVG_MODEL_BPR ? F : 0;
}

/* Bytes of a sealed row with a history of n items. */
static uint64_t row_bytes(uint64_t n, uint64_t Fu)
{
    return ROW_OVERHEAD + 8 * n + 4 * Fu;
}

/* The associated data of one row: it binds the row to the model (seal
 * id), the shopper and the shapes its plaintext is read with. */
static void row_ad(unsigned char ad[ROW_AD_BYTES], const unsigned char seal_id[16],
                   const unsigned char *pseudonym, uint32_t type, uint32_t n, uint64_t n_items,
                   uint64_t factors)
{
    memcpy(ad, ROW_CONTEXT, 16);
    memcpy(ad + 16, seal_id, 16);
    memcpy(ad + 32, pseudonym, 16);
    memcpy(ad + 48, &type, 4);
    memcpy(ad + 52, &n, 4);
    memcpy(ad + 56, &n_items, 8);
    memcpy(ad + 64, &factors, 8);
}

/* A directory entry's tag for pseudonym. */
static void row_tag(const unsigned char *dir_key, const unsigned char seal_id[16],
                    const unsigned char *pseudonym, unsigned char tag[16])
{
    unsigned char in[32];
    memcpy(in, seal_id, 16);
    memcpy(in + 16, pseudonym, 16);
    crypto_generichash(tag, 16, in, sizeof in, dir_key, 32);
}

/* Seals (or opens: the same XOR) a pseudonym of a directory entry. */
static void pseud_xor(const unsigned char *dir_key, const unsigned char tag[16],
                      const unsigned char *in, unsigned char *out)
{
    unsigned char nonce[24];
    memcpy(nonce, tag, 16);
    memcpy(nonce + 16, "pvgpseud", 8);
    crypto_stream_xchacha20_xor(out, in, 16, nonce, dir_key);
}

static uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
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

/* The sealed rows region of a file: directory then rows (ciphertext only;
 * malloc'd), and the user and history counts it holds. */
typedef struct rows_blob {
    uint64_t n_users, hist_nnz;
    unsigned char *buf;
    uint64_t len;
} rows_blob;

/* Writes m to path (temp file, fsync, rename, fsync of the directory); the
 * caller holds the directory lock. rb NULL: a plain file (a model trained
 * from a file), the per-shopper sections from m; rb non-NULL: a sealed
 * file, the per-shopper data is rb (m's seal id names its keys). */
static pvg_status model_write(const pvg_model *m, const char *path, const rows_blob *rb,
                              pvg_error *err)
{
    int sealed = rb != NULL;
    if (!sealed && m->users_locked)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "the per-shopper sections of this model are still sealed: open them "
                             "with pvg_model_unseal before saving");
    if (!sealed && m->keying == PVG_KEY_STORE_PSEUDONYM)
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
    h.n_users = sealed ? rb->n_users : m->n_users;
    h.n_items = m->n_items;
    h.factors = m->factors;
    h.hist_nnz = sealed ? rb->hist_nnz : m->hist_nnz;
    h.knn_nnz = m->knn_nnz;
    h.item_str_len = m->item_str_len;
    memcpy(h.salt, m->salt, 16);
    memcpy(h.fingerprint, m->fingerprint, 32);
    hyper_pack(&m->params, h.hyper);
    if (m->dp.epsilon > 0) {
        h.dp_epsilon = m->dp.epsilon;
        h.dp_delta = m->dp.delta;
        h.dp_noise_multiplier = m->dp.noise_multiplier;
        h.dp_sensitivity = m->dp.sensitivity;
        h.dp_clip = m->dp.clip;
        h.dp_max_items = m->dp.max_items;
        h.dp_vocab = (uint32_t)m->dp_vocab;
        snprintf(h.dp_mechanism, sizeof h.dp_mechanism, "%s",
                 m->dp.mechanism ? m->dp.mechanism : "");
    }
    h.rec_present = m->params.recency_now;
    h.rec_halflife = m->params.recency_halflife_days;
    h.rec_days = m->params.recent_pop_days;
    h.rec_beta = m->params.recent_pop_beta;
    h.rec_share = m->params.recent_pop_share;
    h.rec_flags = (m->params.recency_row_norm ? 1u : 0u) | (m->params.recent_pop_unit ? 2u : 0u) |
                  (m->rec_present_data ? 4u : 0u);
    if (sealed) {
        h.flags = FLAG_SEALED;
        memcpy(h.seal_id, m->seal_id, 16);
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
    if (sealed) {
        h.sealed_off = off;
        h.sealed_len = rb->len;
        off = align64(off + rb->len);
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
    if (sealed) {
        crypto_generichash_update(&hs, rb->buf, rb->len);
        pos += rb->len;
        crypto_generichash_update(&hs, zeros, align64(pos) - pos);
        pos = align64(pos);
    }
    crypto_generichash_final(&hs, h.checksum, 32);
    memcpy(head, &h, sizeof h);

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 12);
    if (!tmp) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp); /* 0600, a name no concurrent writer shares */
    if (fd < 0) {
        pvg_status st =
            pvg_error_set_at(err, PVG_ERR_IO, tmp, 0, 0, -1, "cannot create: %s", strerror(errno));
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
    if (sealed && !bad) {
        bad = write_all(fd, rb->buf, rb->len);
        pos += rb->len;
        if (!bad) bad = write_all(fd, zeros, align64(pos) - pos);
    }
    if (!bad) bad = fsync(fd);
    if (close(fd) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        pvg_status st =
            pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot write: %s", strerror(errno));
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

typedef struct tag_idx {
    unsigned char tag[16];
    uint32_t pos;
} tag_idx;

static int tag_idx_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

/* Seals each shopper's rows of an open store-linked model under their own
 * row key into a new rows region (users whose key was already gone at
 * training are left out). */
static pvg_status seal_rows(const pvg_model *m, rows_blob *rb, pvg_error *err)
{
    memset(rb, 0, sizeof *rb);
    if (m->users_locked)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "the per-shopper sections of this model are still sealed: open them "
                             "with pvg_model_unseal before saving");
    if (!m->row_keys || !m->row_ok)
        return pvg_error_set(err, PVG_ERR_STATE,
                             "this model is keyed by store pseudonyms but carries no store link: "
                             "its per-shopper sections would be written in plaintext (train it "
                             "from pvg_dataset_load_store or open it with pvg_model_load_store)");
    if (!m->dir_key)
        return pvg_error_set(err, PVG_ERR_STATE, "model: the store link lacks its directory key");
    uint64_t nu = m->n_users, Fu = row_factors(m->type, m->factors);
    uint64_t n = 0, nnz = 0, len = 0, maxn = 0;
    for (uint64_t u = 0; u < nu; u++) {
        if (!m->row_ok[u]) continue;
        uint64_t h = m->hist_indptr[u + 1] - m->hist_indptr[u];
        if (h >= (1ull << 32))
            return pvg_error_set(err, PVG_ERR_INVALID, "a history of %llu items is too long",
                                 (unsigned long long)h);
        n++;
        nnz += h;
        len += row_bytes(h, Fu);
        if (h > maxn) maxn = h;
    }
    len += DIR_ENTRY * n;
    tag_idx *ti = malloc((n ? n : 1) * sizeof *ti);
    unsigned char *buf = malloc(len ? len : 1);
    unsigned char *plain = sodium_malloc(8 * maxn + 4 * Fu + 8);
    if (!ti || !buf || !plain) {
        free(ti);
        free(buf);
        if (plain) sodium_free(plain);
        return pvg_error_set(err, PVG_ERR_NOMEM, "model: out of memory sealing %llu bytes",
                             (unsigned long long)len);
    }
    /* the directory in tag order: user p (sorted key position) -> index */
    uint64_t q = 0;
    for (uint64_t p = 0; p < nu; p++) {
        uint32_t u = m->user_order[p];
        if (!m->row_ok[u]) continue;
        row_tag(m->dir_key, m->seal_id, m->user_keys + 16 * p, ti[q].tag);
        ti[q].pos = (uint32_t)p;
        q++;
    }
    qsort(ti, n, sizeof *ti, tag_idx_cmp);
    uint64_t at = DIR_ENTRY * n;
    for (q = 0; q < n; q++) {
        uint64_t p = ti[q].pos;
        uint32_t u = m->user_order[p];
        uint64_t b = m->hist_indptr[u];
        uint32_t h = (uint32_t)(m->hist_indptr[u + 1] - b);
        unsigned char *e = buf + DIR_ENTRY * q;
        const unsigned char *key16 = m->user_keys + 16 * p;
        uint32_t zero = 0;
        memcpy(e, ti[q].tag, 16);
        pseud_xor(m->dir_key, ti[q].tag, key16, e + 16);
        memcpy(e + DE_OFF, &at, 8);
        memcpy(e + DE_N, &h, 4);
        memcpy(e + DE_N + 4, &zero, 4);
        memcpy(plain, m->hist_items + b, 4 * (size_t)h);
        memcpy(plain + 4 * (size_t)h, m->hist_w + b, 4 * (size_t)h);
        if (Fu) memcpy(plain + 8 * (size_t)h, m->U + (size_t)u * Fu, 4 * Fu);
        unsigned char ad[ROW_AD_BYTES];
        row_ad(ad, m->seal_id, key16, (uint32_t)m->type, h, m->n_items, m->factors);
        unsigned char *row = buf + at;
        randombytes_buf(row, NONCE_BYTES);
        crypto_aead_xchacha20poly1305_ietf_encrypt(row + NONCE_BYTES, NULL, plain,
                                                   8 * (uint64_t)h + 4 * Fu, ad, sizeof ad, NULL,
                                                   row, m->row_keys + 32 * (size_t)u);
        at += row_bytes(h, Fu);
    }
    free(ti);
    sodium_free(plain); /* wipes the last row's plaintext */
    rb->n_users = n;
    rb->hist_nnz = nnz;
    rb->buf = buf;
    rb->len = len;
    return PVG_OK;
}

pvg_status pvg_model_save(const pvg_model *m, const char *path, pvg_error *err)
{
    if (!m || !path) return pvg_error_set(err, PVG_ERR_INVALID, "save: NULL model or path");
    pvg_status st;
    if (m->keying == PVG_KEY_STORE_PSEUDONYM) {
        /* personal data: only where erasure reaches it */
        if (m->data_dir) {
            st = pvg_model_path_check_store(path, m->data_dir, err);
            if (st != PVG_OK) return st;
        }
    } else if (pvg_model_path_in_data_dir(path)) {
        return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                "a model trained from a file is not saved inside a data dir: "
                                "its per-shopper rows are keyed by a salted hash that erasure "
                                "cannot match (save it elsewhere for evaluation, or train from "
                                "the store to serve it)");
    }
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    int lk;
    st = dir_lock(dir, &lk, err);
    if (st != PVG_OK) return st;
    if (m->keying == PVG_KEY_STORE_PSEUDONYM) {
        rows_blob rb;
        st = seal_rows(m, &rb, err);
        if (st == PVG_OK) st = model_write(m, path, &rb, err);
        free(rb.buf);
    } else {
        st = model_write(m, path, NULL, err);
    }
    dir_unlock(lk);
    return st;
}

/* ---- where model files live ------------------------------------------------ */

/* The resolved directory of path into out (PATH_MAX); -1 when it does not
 * exist (errno set). */
static int resolved_dir_of(const char *path, char *out)
{
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    return realpath(dir, out) ? 0 : -1;
}

pvg_status pvg_model_path_check_store(const char *path, const char *data_dir, pvg_error *err)
{
    if (!path || !data_dir)
        return pvg_error_set(err, PVG_ERR_INVALID, "model path check: NULL path or data dir");
    char d[PATH_MAX], dd[PATH_MAX], sub[PATH_MAX + 16];
    if (!realpath(data_dir, dd))
        return pvg_error_set_at(err, PVG_ERR_IO, data_dir, 0, 0, -1, "data dir: %s",
                                strerror(errno));
    if (resolved_dir_of(path, d) != 0)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "the model file's directory: %s",
                                strerror(errno));
    snprintf(sub, sizeof sub, "%s/%s", dd, PVG_MODEL_SUBDIR);
    if (strcmp(d, dd) != 0 && strcmp(d, sub) != 0)
        return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                "a model trained from the store is personal data and lives only "
                                "in its data dir, where erasure reaches it: directly in %s or in "
                                "%s (this path is in %s)",
                                dd, sub, d);
    struct stat sb;
    if (lstat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                "not a regular file (a symbolic link could lead erasure "
                                "elsewhere)");
    return PVG_OK;
}

int pvg_model_path_in_data_dir(const char *path)
{
    char d[PATH_MAX];
    if (!path || resolved_dir_of(path, d) != 0) return 0;
    for (;;) {
        if (pvg_store_dir_is_data_dir(d)) return 1;
        char *slash = strrchr(d, '/');
        if (!slash || slash == d) return pvg_store_dir_is_data_dir("/");
        *slash = 0;
    }
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
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot map: %s", strerror(errno));
    const unsigned char *base = map;
    file_header h;
    memcpy(&h, base, sizeof h);
    pvg_status st = PVG_OK;
    if (memcmp(h.magic, MODEL_MAGIC, 8) != 0) {
        st = corrupt(err, path, 0, "not a privguide model file (bad magic)");
        goto fail;
    }
    if (h.version < 1 || h.version > MODEL_VERSION) {
        st = pvg_error_set_at(err, PVG_ERR_UNSUPPORTED, path, 0, 0, 8,
                              "model file format version %u; this build reads versions 1 to %u "
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
    /* store-trained models of older formats: plaintext rows (1), or all
     * shoppers' rows under one store-wide key that erasure cannot shred (2) */
    if (h.keying == PVG_KEY_STORE_PSEUDONYM && (!sealed || h.version < 3)) {
        st = pvg_error_set_at(err, PVG_ERR_UNSUPPORTED, path, 0, 0, 8,
                              "model file format %u %s: its shoppers' rows cannot be shredded by "
                              "erasure; retrain the model from the store and delete this file",
                              h.version,
                              sealed ? "seals every shopper under one store-wide key"
                                     : "holds store-trained rows in plaintext");
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
    if (!bad_hyper && h.version >= 4) bad_hyper = dp_unpack(&h, m);
    char rec_msg[PVG_ERROR_TEXT_LEN + 32]; /* "recency record: " and the check's text */
    if (!bad_hyper && h.version >= 4) bad_hyper = recency_unpack(&h, m, rec_msg, sizeof rec_msg);
    m->map = map;
    m->map_len = size;
    if (bad_hyper) {
        pvg_model_free(m);
        return corrupt(
            err, path,
            (long long)(strncmp(bad_hyper, "DP", 2) == 0        ? offsetof(file_header, dp_epsilon)
                        : strncmp(bad_hyper, "recency", 7) == 0 ? offsetof(file_header, rec_present)
                                                                : offsetof(file_header, hyper)),
            bad_hyper);
    }
    /* expected section sizes */
    uint64_t nu = h.n_users, ni = h.n_items, F = h.factors;
    int fac = m->type == PVG_MODEL_IALS || m->type == PVG_MODEL_BPR;
    int knn = m->type == PVG_MODEL_ITEMKNN;
    uint64_t want[PVG_SEC_COUNT];
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
        /* the rows region: a sorted directory, rows packed in its order */
        uint64_t Fu = row_factors(h.type, F), so = h.sealed_off, sl = h.sealed_len;
        const char *rbad = NULL;
        long long roff = (long long)offsetof(file_header, sealed_off);
        if (so < DATA_START || so % 64 || so > size || sl > size - so || DIR_ENTRY * nu > sl)
            rbad = "the sealed rows region leaves the file or cannot hold its directory";
        uint64_t at = DIR_ENTRY * nu, nnz = 0;
        const unsigned char *reg = base + so;
        for (uint64_t i = 0; !rbad && i < nu; i++) {
            const unsigned char *e = reg + DIR_ENTRY * i;
            roff = (long long)(so + DIR_ENTRY * i);
            uint64_t n = rd32(e + DE_N);
            if (i && memcmp(e - DIR_ENTRY, e, 16) >= 0)
                rbad = "the rows directory is not strictly sorted by tag";
            else if (rd64(e + DE_OFF) != at || rd32(e + DE_N + 4) != 0)
                rbad = "a row's offset does not follow the previous row";
            else if (row_bytes(n, Fu) > sl - at)
                rbad = "a row leaves the rows region";
            else {
                at += row_bytes(n, Fu);
                nnz += n;
            }
        }
        if (!rbad && (at != sl || nnz != h.hist_nnz)) {
            roff = (long long)offsetof(file_header, sealed_len);
            rbad = "the rows region does not match the header's shapes";
        }
        if (rbad) {
            pvg_model_free(m);
            return corrupt(err, path, roff, rbad);
        }
        m->sealed_file = 1;
        m->users_locked = 1;
        m->sealed = reg;
        m->sealed_off = so;
        m->sealed_len = sl;
        m->file_users = nu;
        m->file_hist_nnz = h.hist_nnz;
        memcpy(m->seal_id, h.seal_id, 16);
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
    else if (knn &&
             (check_indptr(m->knn_indptr, ni, h.knn_nnz) || check_below(m->knn_idx, h.knn_nnz, ni)))
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
    if (!bad && m->dp.epsilon > 0) {
        /* a DP record is believed only with the item sections it was
         * released with: the fingerprint covers both */
        unsigned char fp[32];
        pvg_dp_public_fingerprint(m, fp);
        if (sodium_memcmp(fp, m->fingerprint, 32) != 0)
            bad = "DP record or item sections do not match the DP model's fingerprint";
    }
    if (bad) {
        /* the fingerprint's own field for its mismatch; the sections'
         * problems have no single offset */
        long long off =
            strncmp(bad, "DP record", 9) == 0 ? (long long)offsetof(file_header, fingerprint) : -1;
        pvg_model_free(m);
        return corrupt(err, path, off, bad);
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

typedef struct key_pos {
    unsigned char key[16];
    uint32_t idx;
} key_pos;

static int key_pos_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

size_t pvg_model_n_shredded(const pvg_model *m)
{
    return m ? (size_t)m->shredded : 0;
}

pvg_status pvg_model_unseal(pvg_model *m, pvg_store *store, pvg_error *err)
{
    if (!m || !store) return pvg_error_set(err, PVG_ERR_INVALID, "unseal: NULL model or store");
    const char *path = m->path ? m->path : "model";
    if (m->keying != PVG_KEY_STORE_PSEUDONYM)
        return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                                "a model trained from a file is not used with a store: its users "
                                "are keyed by a salted hash no consent, audit or erasure of the "
                                "store reaches (train the model from the store to serve it)");
    const char *dd = pvg_store_dir(store);
    pvg_status st = m->path ? pvg_model_path_check_store(m->path, dd, err) : PVG_OK;
    if (st != PVG_OK || !m->users_locked) return st;
    /* the directory's pseudonyms (each checked against its tag), then each
     * shopper's row key from their data key; a shopper whose key is gone
     * (erased) stays sealed: absent from the opened model */
    uint64_t n = m->file_users, Fu = row_factors(m->type, m->factors);
    unsigned char *dkey = sodium_malloc(32);
    unsigned char *keys = sodium_malloc(32 * (n ? n : 1));
    unsigned char *found = malloc(n ? n : 1);
    unsigned char *psd = malloc(16 * (n ? n : 1));
    char *ddup = strdup(dd);
    if (!dkey || !keys || !found || !psd || !ddup) {
        if (dkey) sodium_free(dkey);
        if (keys) sodium_free(keys);
        free(found);
        free(psd);
        free(ddup);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    st = pvg_store_model_dir_key(store, dkey);
    if (st != PVG_OK) pvg_error_set(err, st, "the store has no keys loaded");
    for (uint64_t i = 0; st == PVG_OK && i < n; i++) {
        const unsigned char *e = m->sealed + DIR_ENTRY * i;
        unsigned char t[16];
        pseud_xor(dkey, e, e + 16, psd + 16 * i);
        row_tag(dkey, m->seal_id, psd + 16 * i, t);
        if (sodium_memcmp(t, e, 16) != 0) memset(psd + 16 * i, 0, 16); /* not this store's */
    }
    size_t n_found = 0;
    if (st == PVG_OK)
        st = pvg_store_model_row_keys(store, m->seal_id, n, psd, 16, keys, found, &n_found, err);
    if (st != PVG_OK) {
        sodium_free(dkey);
        sodium_free(keys);
        free(found);
        free(psd);
        free(ddup);
        return st;
    }
    /* room for every shopper with a key; rows that fail to open are left out */
    uint64_t nnz_max = 0, row_max = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t h = rd32(m->sealed + DIR_ENTRY * i + DE_N);
        if (found[i]) nnz_max += h;
        if (h > row_max) row_max = h;
    }
    uint64_t want[PVG_SEC_COUNT], uoff[PVG_SEC_COUNT];
    section_lengths(m->type, n_found, m->n_items, m->factors, nnz_max, m->knn_nnz, m->item_str_len,
                    want);
    uint64_t plain_len = user_layout(want, uoff);
    unsigned char *mem = sodium_malloc(plain_len ? plain_len : 64);
    unsigned char *plain = sodium_malloc(8 * row_max + 4 * Fu + 8);
    unsigned char *ok = malloc(n_found ? n_found : 1);
    key_pos *kp = malloc((n_found ? n_found : 1) * sizeof *kp);
    if (!mem || !plain || !ok || !kp) {
        if (mem) sodium_free(mem);
        if (plain) sodium_free(plain);
        sodium_free(dkey);
        sodium_free(keys);
        free(found);
        free(psd);
        free(ok);
        free(kp);
        free(ddup);
        return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory opening %llu bytes of rows",
                             (unsigned long long)plain_len);
    }
    unsigned char *ukeys = mem + uoff[PVG_SEC_USER_KEYS];
    uint32_t *order = (uint32_t *)(mem + uoff[PVG_SEC_USER_ORDER]);
    uint64_t *indptr = (uint64_t *)(mem + uoff[PVG_SEC_HIST_INDPTR]);
    uint32_t *items = (uint32_t *)(mem + uoff[PVG_SEC_HIST_ITEMS]);
    float *w = (float *)(mem + uoff[PVG_SEC_HIST_W]);
    float *U = Fu ? (float *)(mem + uoff[PVG_SEC_USER_F]) : NULL;
    uint64_t q = 0, nnz = 0;
    indptr[0] = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (!found[i]) continue;
        const unsigned char *e = m->sealed + DIR_ENTRY * i;
        uint32_t h = rd32(e + DE_N);
        const unsigned char *row = m->sealed + rd64(e + DE_OFF);
        unsigned char ad[ROW_AD_BYTES];
        row_ad(ad, m->seal_id, psd + 16 * i, (uint32_t)m->type, h, m->n_items, m->factors);
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, row + NONCE_BYTES,
                                                       row_bytes(h, Fu) - NONCE_BYTES, ad,
                                                       sizeof ad, row, keys + 32 * i) != 0)
            continue; /* another key of the same pseudonym (a re-created shopper), or edited */
        memcpy(kp[q].key, psd + 16 * i, 16);
        kp[q].idx = (uint32_t)q;
        memcpy(items + nnz, plain, 4 * (size_t)h);
        memcpy(w + nnz, plain + 4 * (size_t)h, 4 * (size_t)h);
        if (Fu) memcpy(U + q * Fu, plain + 8 * (size_t)h, 4 * Fu);
        if (q != i) memcpy(keys + 32 * q, keys + 32 * i, 32);
        ok[q] = 1;
        nnz += h;
        indptr[++q] = nnz;
    }
    /* the lookup is a binary search over the keys sorted by pseudonym */
    qsort(kp, q, sizeof *kp, key_pos_cmp);
    for (uint64_t j = 0; j < q; j++) {
        memcpy(ukeys + 16 * j, kp[j].key, 16);
        order[j] = kp[j].idx;
    }
    free(kp);
    free(psd);
    sodium_free(plain);
    free(found);
    if (n > 0 && q == 0) {
        sodium_free(mem);
        sodium_free(dkey);
        sodium_free(keys);
        free(ok);
        free(ddup);
        return pvg_error_set_at(err, PVG_ERR_CRYPTO, path, 0, 0, (long long)m->sealed_off,
                                "none of the %llu shoppers of this model has a key in this "
                                "store that opens their rows: it was trained from another store "
                                "(or every one of them was erased since)",
                                (unsigned long long)n);
    }
    /* the key slots past q held keys of rows that did not open */
    if (q < n_found) sodium_memzero(keys + 32 * q, 32 * (n_found - q));
    m->users_mem = mem;
    m->users_mem_len = plain_len;
    if (m->dir_key) sodium_free(m->dir_key);
    m->dir_key = dkey;
    if (m->row_keys) sodium_free(m->row_keys);
    free(m->row_ok);
    m->row_keys = keys;
    m->row_ok = ok;
    free(m->data_dir);
    m->data_dir = ddup;
    m->shredded = n - q;
    m->n_users = q;
    m->hist_nnz = nnz;
    uint64_t len[PVG_SEC_COUNT];
    section_lengths(m->type, q, m->n_items, m->factors, nnz, m->knn_nnz, m->item_str_len, len);
    for (int s = 1; s < PVG_SEC_COUNT; s++)
        if (pvg_model_section_is_user(s)) {
            m->sec[s] = len[s] ? mem + uoff[s] : NULL;
            m->sec_len[s] = len[s];
        }
    m->users_locked = 0;
    pvg_model_bind(m);
    const char *bad = check_users(m);
    if (bad) return corrupt(err, path, (long long)m->sealed_off, bad);
    return PVG_OK;
}

pvg_status pvg_model_load_store(const char *path, pvg_store *store, pvg_model **out, pvg_error *err)
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
enum { ERASE_REMOVED, ERASE_ABSENT, ERASE_NOT_STORE };

/* Index of a tag in the rows directory of a sealed file, or -1. */
static int64_t find_row(const pvg_model *m, const unsigned char key[16])
{
    size_t lo = 0, hi = m->file_users;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = memcmp(m->sealed + DIR_ENTRY * mid, key, 16);
        if (c == 0) return (int64_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* The rows region of m without row r: the other rows copied as they are
 * (no key is needed to drop a row). */
static pvg_status rows_without(const pvg_model *m, uint64_t r, rows_blob *rb, pvg_error *err)
{
    memset(rb, 0, sizeof *rb);
    uint64_t n = m->file_users, Fu = row_factors(m->type, m->factors);
    const unsigned char *er = m->sealed + DIR_ENTRY * r;
    uint64_t h_r = rd32(er + DE_N), drop = row_bytes(h_r, Fu);
    uint64_t len = m->sealed_len - DIR_ENTRY - drop;
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    uint64_t at = DIR_ENTRY * (n - 1), q = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (i == r) continue;
        const unsigned char *e = m->sealed + DIR_ENTRY * i;
        uint64_t rl = row_bytes(rd32(e + DE_N), Fu);
        unsigned char *d = buf + DIR_ENTRY * q++;
        memcpy(d, e, DIR_ENTRY);
        memcpy(d + DE_OFF, &at, 8);
        memcpy(buf + at, m->sealed + rd64(e + DE_OFF), rl);
        at += rl;
    }
    rb->n_users = n - 1;
    rb->hist_nnz = m->file_hist_nnz - h_r;
    rb->buf = buf;
    rb->len = len;
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

/* The erasure of one file; the caller holds the directory lock. The row is
 * already shredded (the data key is gone); this removes the pseudonym and
 * the ciphertext too. */
static pvg_status erase_locked(const char *path, const unsigned char *dir_key,
                               const unsigned char pseudonym[16], int *what, pvg_error *err)
{
    *what = ERASE_ABSENT;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open model: %s",
                                strerror(errno));
    pvg_model *m = NULL;
    pvg_status st = model_map_fd(fd, path, &m, err);
    if (st == PVG_OK && m->keying != PVG_KEY_STORE_PSEUDONYM) {
        *what = ERASE_NOT_STORE;
        goto done;
    }
    if (st != PVG_OK) goto done;
    unsigned char tag[16];
    row_tag(dir_key, m->seal_id, pseudonym, tag);
    int64_t r = find_row(m, tag);
    if (r < 0) goto done;
    rows_blob rb;
    st = rows_without(m, (uint64_t)r, &rb, err);
    if (st == PVG_OK) st = model_write(m, path, &rb, err);
    free(rb.buf);
    if (st != PVG_OK) goto done;
    *what = ERASE_REMOVED;
    /* the old inode is out of the directory; wipe its rows region */
    if (wipe_range(fd, m->sealed_off, m->sealed_len))
        st = pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1,
                              "the shopper was removed, but the replaced file's old bytes could "
                              "not be wiped: %s",
                              strerror(errno));
done:
    pvg_model_free(m);
    close(fd);
    return st;
}

static pvg_status not_store_error(const char *path, pvg_error *err)
{
    return pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1,
                            "model file: trained from a file, not from a store: it holds no "
                            "store pseudonyms and erasure cannot remove a shopper from it "
                            "(delete it: file-trained models do not belong in a data dir)");
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
    unsigned char *dk = sodium_malloc(32);
    if (!dk)
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    else if (pvg_store_model_dir_key(store, dk) != PVG_OK)
        st = pvg_error_set(err, PVG_ERR_STATE, "the store has no keys loaded");
    else
        st = erase_locked(path, dk, pseudonym, &what, err);
    if (dk) sodium_free(dk);
    dir_unlock(lk);
    if (st != PVG_OK) return st;
    if (what == ERASE_NOT_STORE) return not_store_error(path, err);
    if (removed) *removed = what == ERASE_REMOVED;
    return PVG_OK;
}

/* 1 when name is a temp file of model_write ("<name>.tmp.XXXXXX"). */
static int is_temp_name(const char *name)
{
    size_t n = strlen(name);
    return n > 11 && memcmp(name + n - 11, ".tmp.", 5) == 0;
}

/* 1 when the file at path (following links) starts with the model magic. */
static int has_model_magic(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    char mg[8];
    int is_model = fd >= 0 && pread(fd, mg, 8, 0) == 8 && memcmp(mg, MODEL_MAGIC, 8) == 0;
    if (fd >= 0) close(fd);
    return is_model;
}

/* Erasure over the files of one directory (dot-files included), under its
 * lock. Counts the files that still hold the shopper (or could not be
 * checked) into *failed, the first one's error into err. */
static void erase_in_dir(const char *dir, const unsigned char *dir_key,
                         const unsigned char pseudonym[16], int *rewritten, int *failed,
                         pvg_error *err)
{
    int lk;
    pvg_error e2;
    pvg_error_clear(&e2);
    pvg_status st = dir_lock(dir, &lk, &e2);
    DIR *d = st == PVG_OK ? opendir(dir) : NULL;
    if (!d) {
        if (st == PVG_OK)
            pvg_error_set_at(&e2, PVG_ERR_IO, dir, 0, 0, -1, "cannot list: %s", strerror(errno));
        if ((*failed)++ == 0) *err = e2;
        dir_unlock(lk);
        return;
    }
    struct dirent *de;
    char path[4096];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) {
            pvg_error_set_at(&e2, PVG_ERR_IO, dir, 0, 0, -1, "a file name too long to check");
            if ((*failed)++ == 0) *err = e2;
            continue;
        }
        struct stat sb;
        if (lstat(path, &sb) != 0) continue; /* gone meanwhile */
        if (S_ISLNK(sb.st_mode)) {
            struct stat tb;
            if (stat(path, &tb) == 0 && S_ISREG(tb.st_mode) && has_model_magic(path)) {
                pvg_error_set_at(&e2, PVG_ERR_INVALID, path, 0, 0, -1,
                                 "a symbolic link to a model file: erasure does not follow "
                                 "links (keep model files as regular files in the data dir)");
                if ((*failed)++ == 0) *err = e2;
            }
            continue;
        }
        if (!S_ISREG(sb.st_mode) || sb.st_size < 8 || !has_model_magic(path)) continue;
        if (is_temp_name(de->d_name)) {
            /* left by a writer that died: writers hold the lock we hold */
            (void)unlink(path);
            continue;
        }
        int what;
        pvg_error_clear(&e2);
        st = erase_locked(path, dir_key, pseudonym, &what, &e2);
        if (st == PVG_OK && what == ERASE_NOT_STORE) st = not_store_error(path, &e2);
        if (st == PVG_OK && what == ERASE_REMOVED && rewritten) (*rewritten)++;
        if (st != PVG_OK && (*failed)++ == 0)
            pvg_error_set_at(err, st, path, 0, 0, e2.offset,
                             "model file not erased (it may still hold the shopper's rows): %s",
                             e2.text);
    }
    closedir(d);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    dir_unlock(lk);
}

pvg_status pvg_model_dir_erase_user(const char *dir, pvg_store *store,
                                    const unsigned char pseudonym[16], int *rewritten,
                                    pvg_error *err)
{
    if (rewritten) *rewritten = 0;
    if (!dir || !store || !pseudonym)
        return pvg_error_set(err, PVG_ERR_INVALID, "erase: NULL directory, store or pseudonym");
    unsigned char *dk = sodium_malloc(32);
    if (!dk) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    if (pvg_store_model_dir_key(store, dk) != PVG_OK) {
        sodium_free(dk);
        return pvg_error_set(err, PVG_ERR_STATE, "the store has no keys loaded");
    }
    int failed = 0;
    pvg_error first;
    pvg_error_clear(&first);
    erase_in_dir(dir, dk, pseudonym, rewritten, &failed, &first);
    char sub[4096];
    struct stat sb;
    if (snprintf(sub, sizeof sub, "%s/%s", dir, PVG_MODEL_SUBDIR) < (int)sizeof sub &&
        lstat(sub, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) {
            erase_in_dir(sub, dk, pseudonym, rewritten, &failed, &first);
        } else {
            pvg_error e2;
            pvg_error_set_at(&e2, PVG_ERR_INVALID, sub, 0, 0, -1,
                             "not a directory (a link could lead erasure elsewhere)");
            if (failed++ == 0) first = e2;
        }
    }
    sodium_free(dk);
    if (!failed) return PVG_OK;
    if (err) {
        *err = first;
        if (failed > 1) {
            size_t l = strlen(err->text);
            snprintf(err->text + l, sizeof err->text - l, " (and %d more model files)", failed - 1);
        }
    }
    return first.code != PVG_OK ? first.code : PVG_ERR_IO;
}
