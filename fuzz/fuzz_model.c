/*
 * fuzz_model.c - libFuzzer harness for the model file loader
 * (pvg_model_load, src/model/model_file.c) and the serving calls on a
 * model it accepted.
 *
 * The file's checksum is an integrity check, not an authenticator: anyone
 * who crafts a model file can compute it. So the harness writes the right
 * file size and BLAKE2b checksum into the header before loading (unless
 * the input is shorter than the header), and the fuzzer reaches the
 * validation behind them. Offsets: docs/models.md, file_header in
 * model_file.c.
 * FUZZ_MODEL_SANE_HYPER=1 (exploration only) replaces hyperparameters
 * outside [0, 1e9) by 0, so that inputs go past the loader's range check
 * of the hyperparameters into the sections behind it.
 * Seeds: fuzz/corpus/model/ (small models of each type, made by the CLI).
 */
#include "fuzz_common.h"

#include <privguide/model.h>

#include <sodium.h>

#define HDR_FILE_SIZE 72 /* offsetof(file_header, file_size) */
#define HDR_HYPER 128    /* offsetof(file_header, hyper): 14 doubles */
#define HDR_CHECKSUM 240 /* offsetof(file_header, checksum) */
#define DATA_START 1024  /* header + section table */

/* A query on a model the loader accepted answers with at most k items or
 * fails saying why. Clears err for the next query. */
static void check_query(pvg_status st, pvg_error *err, size_t n_out, size_t k)
{
    if (st == PVG_OK && n_out > k) abort();
    fuzz_check_error(st, err);
    pvg_error_clear(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (pvg_init() != PVG_OK) abort();
        ready = 1;
    }
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    if (size >= DATA_START) {
        static int sane = -1;
        if (sane < 0) sane = getenv("FUZZ_MODEL_SANE_HYPER") != NULL;
        for (int i = 0; sane && i < 14; i++) {
            double h;
            memcpy(&h, buf + HDR_HYPER + 8 * i, 8);
            if (!(h >= 0 && h < 1e9)) h = 0;
            memcpy(buf + HDR_HYPER + 8 * i, &h, 8);
        }
        uint64_t fs = size;
        memcpy(buf + HDR_FILE_SIZE, &fs, 8);
        memset(buf + HDR_CHECKSUM, 0, 32);
        unsigned char sum[32];
        crypto_generichash(sum, 32, buf, size, NULL, 0);
        memcpy(buf + HDR_CHECKSUM, sum, 32);
    }
    char path[64];
    int fd = fuzz_file(buf, size, path, sizeof path);
    free(buf);
    if (fd < 0) return 0;
    pvg_model *m = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_model_load(path, &m, &err);
    close(fd);
    fuzz_check_error(st, &err);
    if (st != PVG_OK) return 0;
    /* a model the loader accepted must be safe to serve from */
    pvg_error_clear(&err);
    pvg_scored_item out[8];
    size_t n_out = 0, ni = pvg_model_n_items(m);
    check_query(pvg_model_popular(m, 8, out, &n_out, &err), &err, n_out, 8);
    for (size_t i = 0; i < ni && i < 4; i++) {
        const char *id = pvg_model_item_id(m, (int64_t)i);
        if (!id) abort();
        check_query(pvg_model_similar(m, id, 8, out, &n_out, &err), &err, n_out, 8);
        if (pvg_model_item_index(m, id) < 0) abort();
    }
    if (ni) {
        int64_t hist[2] = {0, (int64_t)(ni - 1)};
        check_query(pvg_model_recommend_history(m, hist, NULL, 2, 8, out, &n_out, &err), &err,
                    n_out, 8);
    }
    unsigned char key[16];
    if (pvg_model_keying(m) == PVG_KEY_SALTED_HASH &&
        pvg_model_user_key(m, NULL, "17850", key, &err) == PVG_OK)
        check_query(pvg_model_recommend(m, key, 8, 0, out, &n_out, &err), &err, n_out, 8);
    pvg_model_free(m);
    return 0;
}
