/*
 * model_key.c - what model files need from the store: the per-shopper keys
 * that seal each shopper's rows of a store-trained model file
 * (src/model/model_file.c), and whether a directory is a data dir.
 *
 * A row key is derived from the shopper's data key (keyed BLAKE2b-256 of
 * "pvgmodel-row-key" | the model's seal id), so it differs per model, is
 * never stored, and dies with the data key: pvg_store_user_delete destroys
 * the data key, which shreds the shopper's rows in every copy of every model
 * file (backups included). Master-key rotation rewraps data keys without
 * changing them, so it leaves model files readable.
 *
 * The directory key hides which pseudonyms a model file holds: a subkey of
 * the pepper (crypto_kdf, context "pvgmodir"), which never rotates (the
 * pseudonyms are derived from it), so a data dir copied without the key
 * file cannot link a model's rows to the store's users.
 */
#include "store/store_priv.h"

#include <assert.h>
#include <string.h>

static const unsigned char ROW_KEY_CONTEXT[16] = "pvgmodel-row-key";

pvg_status pvg_store_model_row_keys(pvg_store *s, const unsigned char seal_id[16], size_t n,
                                    const unsigned char *pseudonyms, size_t stride,
                                    unsigned char *keys_out, unsigned char *found, size_t *n_found,
                                    pvg_error *err)
{
    if (n_found) *n_found = 0;
    if (!s || !seal_id || (n && (!pseudonyms || !keys_out || !found)))
        return pvg_error_set(err, PVG_ERR_INVALID, "model row keys: NULL argument");
    if (!s->keys.master)
        return pvg_error_set(err, PVG_ERR_STATE, "the store has no master key loaded");
    unsigned char *dk = sodium_malloc(PVG_KEY_BYTES);
    if (!dk) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    unsigned char msg[32];
    memcpy(msg, ROW_KEY_CONTEXT, 16);
    memcpy(msg + 16, seal_id, 16);
    pvg_status st = PVG_OK;
    size_t got = 0;
    for (size_t i = 0; i < n; i++) {
        found[i] = 0;
        pvg_error e2;
        pvg_error_clear(&e2);
        /* the key store itself, not the key cache: a key destroyed by
         * another process is gone here at once */
        pvg_status ks = pvg_store_user_key(s, pseudonyms + i * stride, dk, &e2);
        if (ks == PVG_ERR_NOT_FOUND) continue; /* erased: the rows are shredded */
        if (ks != PVG_OK) {
            st = pvg_error_set(err, ks, "model row key %zu: %s", i, e2.text);
            break;
        }
        crypto_generichash(keys_out + 32 * i, 32, msg, sizeof msg, dk, PVG_KEY_BYTES);
        found[i] = 1;
        got++;
    }
    sodium_free(dk);
    if (st != PVG_OK) sodium_memzero(keys_out, 32 * n);
    if (n_found) *n_found = got;
    return st;
}

pvg_status pvg_store_model_dir_key(pvg_store *s, unsigned char out[32])
{
    _Static_assert(crypto_kdf_KEYBYTES == PVG_KEY_BYTES, "pepper length");
    if (!s || !s->keys.pepper) return PVG_ERR_STATE;
    /* fails only for a subkey length outside libsodium's bounds: 32 is inside */
    int rc = crypto_kdf_derive_from_key(out, 32, 1, "pvgmodir", s->keys.pepper);
    assert(rc == 0);
    if (rc != 0) return PVG_ERR_INTERNAL;
    return PVG_OK;
}

int pvg_store_dir_is_data_dir(const char *dir)
{
    return dir && pvg_backend_exists(dir);
}
