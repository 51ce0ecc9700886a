/*
 * fuzz_mpc_table.c - libFuzzer harness for the `mpc sum` input files
 * (src/crypto/mpc_table.c): the "group,value" CSV and the group list.
 * The first byte picks the reader (even: CSV with 0..9 decimals from the
 * byte, odd: group list); the rest is the file.
 * Seeds: fuzz/corpus/mpc_table/.
 */
#include "fuzz_common.h"

#include <privguide/secagg.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned pick = data[0];
    char path[64];
    int fd = fuzz_file(data + 1, size - 1, path, sizeof path);
    if (fd < 0) return 0;
    pvg_mpc_table *t = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = (pick & 1) ? pvg_mpc_table_read_groups(path, &t, &err)
                               : pvg_mpc_table_read_csv(path, (pick >> 1) % 10, NULL, &t, &err);
    close(fd);
    fuzz_check_error(st, &err);
    if (st == PVG_OK) {
        size_t n = pvg_mpc_table_count(t);
        for (size_t i = 0; i < n; i++) {
            const char *l = pvg_mpc_table_label(t, i);
            if (!l || !*l || (i && strcmp(pvg_mpc_table_label(t, i - 1), l) >= 0)) abort();
            if (!pvg_mpc_table_has(t, l)) abort();
        }
        pvg_mpc_table_free(t);
    }
    return 0;
}
