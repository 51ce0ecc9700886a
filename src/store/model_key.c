/*
 * model_key.c - the key that seals the per-shopper sections of model files
 * trained from this store (src/model/model_file.c): a subkey of the master
 * key (crypto_kdf, context "pvgmodel", id 1). It is never stored; a data
 * dir copied without the key file cannot open those sections.
 */
#include "store/store_priv.h"

#include <string.h>

#define MODEL_KEY_CONTEXT "pvgmodel" /* crypto_kdf contexts are 8 bytes */
#define MODEL_KEY_ID 1

pvg_status pvg_store_model_key(pvg_store *s, unsigned char out[32])
{
    _Static_assert(crypto_kdf_KEYBYTES == PVG_KEY_BYTES, "master key length");
    if (!s || !s->keys.master) return PVG_ERR_STATE;
    if (crypto_kdf_derive_from_key(out, 32, MODEL_KEY_ID, MODEL_KEY_CONTEXT, s->keys.master) != 0)
        return PVG_ERR_INTERNAL;
    return PVG_OK;
}
