/*
 * fuzz_model_dp.c - libFuzzer harness for the DP record of a model file
 * (version 4 header fields dp_epsilon .. dp_mechanism, read by dp_unpack in
 * src/model/model_file.c through pvg_model_load) and what reads the record
 * back: pvg_model_dp_info_get, the vocabulary's name, and a save and
 * reload of an accepted model.
 *
 * The base files are DP-trained models (popularity and item-kNN, over a
 * small fixed dataset, noise from a seeded generator) made in-process at
 * the first input. An input is: byte 0 picks the base; the next bytes
 * overwrite the DP record (and, with byte 0 bit 1, the bytes after it up
 * to the section table); the file size and checksum are then fixed up as
 * fuzz_model.c does, so the loader's own checks of the record are reached.
 * Accepted records must be sane (epsilon > 0 and finite, delta in [0, 1),
 * m >= 1, a printable mechanism name) and survive a save and reload.
 * Seeds: fuzz/corpus/model_dp/.
 */
#include "fuzz_common.h"

#include <privguide/model.h>
#include <privguide/rng.h>

#include <math.h>
#include <sodium.h>

#define HDR_FILE_SIZE 72 /* offsetof(file_header, file_size) */
#define HDR_CHECKSUM 240 /* offsetof(file_header, checksum) */
#define HDR_DP 328       /* offsetof(file_header, dp_epsilon) */
#define DP_RECORD (5 * 8 + 4 + 4 + PVG_DP_MECHANISM_MAX)
#define DATA_START 1024 /* header + section table */

typedef struct base {
    uint8_t *p;
    size_t n;
} base;

static base bases[2];

static void read_back(const char *path, base *b)
{
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b->p = malloc((size_t)n);
    if (!b->p || fread(b->p, 1, (size_t)n, f) != (size_t)n) abort();
    b->n = (size_t)n;
    fclose(f);
}

static void make_base(pvg_model_type type, base *b)
{
    static const char *const ids[] = {"A", "B", "C", "D", "E", "F", "G", "H"};
    pvg_dataset *ds = NULL;
    unsigned char salt[16] = {1};
    if (pvg_dataset_new(PVG_KEY_SALTED_HASH, NULL, salt, &ds, NULL) != PVG_OK) abort();
    for (int u = 0; u < 40; u++) {
        char user[16];
        snprintf(user, sizeof user, "u%d", u);
        for (int k = 0; k < 4; k++) {
            pvg_event e = {0};
            e.type = PVG_EVENT_PURCHASE;
            e.item = ids[(u * 3 + k * (1 + u % 3)) % 8];
            e.ts = 1000 + k;
            if (pvg_dataset_add_ext(ds, user, &e, NULL) != PVG_OK) abort();
        }
    }
    pvg_train_params p;
    pvg_train_params_default(type, &p);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(7);
    p.dp_epsilon = 2;
    p.dp_delta = 1e-6;
    p.dp_rng = rng;
    p.dp_allow_insecure_rng = 1;
    p.dp_items = ids;
    p.dp_n_items = 8;
    pvg_model *m = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_model_train(ds, &p, &m, NULL, &err) != PVG_OK) {
        fprintf(stderr, "fuzz_model_dp: train: %s\n", err.text);
        abort();
    }
    char path[] = "/tmp/pvg-fuzz-dp-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) abort();
    close(fd);
    if (pvg_model_save(m, path, &err) != PVG_OK) {
        fprintf(stderr, "fuzz_model_dp: save: %s\n", err.text);
        abort();
    }
    read_back(path, b);
    unlink(path);
    /* the layout this harness assumes */
    double eps;
    memcpy(&eps, b->p + HDR_DP, 8);
    if (b->n < DATA_START || !(eps > 0)) abort();
    pvg_model_dp_info d;
    if (pvg_model_dp_info_get(m, &d, &err) != PVG_OK || !d.is_dp || eps != d.epsilon) abort();
    pvg_model_free(m);
    pvg_dataset_free(ds);
    pvg_rng_free(rng);
}

static void check_info(const pvg_model_dp_info *d)
{
    if (!d->is_dp) {
        if (d->epsilon != 0 || d->mechanism[0]) abort();
        return;
    }
    if (!(d->epsilon > 0) || isinf(d->epsilon) || !(d->delta >= 0 && d->delta < 1) ||
        d->max_items < 1 || !(d->sensitivity > 0) || !(d->noise_multiplier >= 0) || !(d->clip >= 0))
        abort();
    size_t l = strnlen(d->mechanism, sizeof d->mechanism);
    if (l == 0 || l == sizeof d->mechanism) abort();
    for (size_t i = 0; i < l; i++)
        if (d->mechanism[i] < 0x21 || d->mechanism[i] > 0x7e) abort();
    if (!pvg_dp_vocabulary_name(d->vocabulary)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!bases[0].p) {
        if (pvg_init() != PVG_OK) abort();
        make_base(PVG_MODEL_POPULARITY, &bases[0]);
        make_base(PVG_MODEL_ITEMKNN, &bases[1]);
    }
    if (size < 1) return 0;
    const base *b = &bases[data[0] & 1];
    size_t room = data[0] & 2 ? DATA_START - HDR_DP : DP_RECORD;
    size_t n = size - 1 < room ? size - 1 : room;
    uint8_t *buf = malloc(b->n);
    if (!buf) return 0;
    memcpy(buf, b->p, b->n);
    memcpy(buf + HDR_DP, data + 1, n);
    uint64_t fs = b->n;
    memcpy(buf + HDR_FILE_SIZE, &fs, 8);
    memset(buf + HDR_CHECKSUM, 0, 32);
    unsigned char sum[32];
    crypto_generichash(sum, 32, buf, b->n, NULL, 0);
    memcpy(buf + HDR_CHECKSUM, sum, 32);
    char path[64];
    int fd = fuzz_file(buf, b->n, path, sizeof path);
    free(buf);
    if (fd < 0) return 0;
    pvg_model *m = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_model_load(path, &m, &err);
    close(fd);
    fuzz_check_error(st, &err);
    if (st != PVG_OK) return 0;
    pvg_model_dp_info d;
    pvg_error_clear(&err);
    if (pvg_model_dp_info_get(m, &d, &err) != PVG_OK) abort();
    check_info(&d);
    /* an accepted record is written back as read */
    char out[] = "/tmp/pvg-fuzz-dp-out-XXXXXX";
    int ofd = mkstemp(out);
    if (ofd >= 0) {
        close(ofd);
        pvg_model *m2 = NULL;
        if (pvg_model_save(m, out, &err) != PVG_OK || pvg_model_load(out, &m2, &err) != PVG_OK) {
            fprintf(stderr, "save/reload of an accepted model: %s\n", err.text);
            abort();
        }
        pvg_model_dp_info d2;
        if (pvg_model_dp_info_get(m2, &d2, &err) != PVG_OK) abort();
        if (d2.is_dp != d.is_dp || memcmp(&d2.epsilon, &d.epsilon, 8) ||
            memcmp(&d2.delta, &d.delta, 8) || d2.max_items != d.max_items ||
            strcmp(d2.mechanism, d.mechanism) || d2.vocabulary != d.vocabulary)
            abort();
        pvg_model_free(m2);
        unlink(out);
    }
    pvg_model_free(m);
    return 0;
}
