/*
 * fuzz_keys.c - libFuzzer harness for the store's key file parser
 * (pvg_keys_load, src/store/keys.c): "privguide-keys v1", pepper, master
 * (or "env") and next lines. The input is the file (mode 0600).
 * PRIVGUIDE_MASTER_KEY is unset, so "master env" files are refused cleanly.
 * Seeds: fuzz/corpus/keys/ (key files as `privguide init` writes them).
 */
#include "fuzz_common.h"

#include <privguide/store.h>

#include "store/store_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (pvg_init() != PVG_OK) abort();
        unsetenv(PVG_ENV_MASTER_KEY);
        unsetenv(PVG_ENV_NEW_MASTER_KEY);
        ready = 1;
    }
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    if (fd < 0) return 0;
    pvg_keyring kr;
    memset(&kr, 0, sizeof kr);
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_keys_load(path, &kr, &err);
    close(fd);
    fuzz_check_error(st, &err);
    if (st == PVG_OK) pvg_keys_free(&kr);
    return 0;
}
