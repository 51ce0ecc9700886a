/*
 * fuzz_reader.c - libFuzzer harness for the input readers, the policy
 * parser and the sealed-record decoder. The first byte of an input picks
 * the format; the rest is the file's content.
 * Seeds: fuzz/corpus/reader/. Build and run: fuzz/run.sh [seconds [reader]]
 */
#include <privguide/import.h>

#include "store/store_priv.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned pick = data[0] % (PVG_FORMAT_COUNT + 2);
    data++;
    size--;
    if (pick == PVG_FORMAT_COUNT) { /* policy parser */
        char *text = malloc(size + 1);
        memcpy(text, data, size);
        text[size] = '\0';
        pvg_policy pol;
        pvg_error err;
        if (pvg_policy_parse(text, "fuzz", &pol, &err) == PVG_OK) pvg_policy_free(&pol);
        free(text);
        return 0;
    }
    if (pick == PVG_FORMAT_COUNT + 1) { /* record and chunk decoders */
        pvg_event ev;
        int64_t item;
        char buf[4096];
        (void)pvg_record_decode(data, size, &ev, &item, buf, sizeof buf);
        return 0;
    }
    int fd = memfd_create("pvg-fuzz", 0);
    if (fd < 0) return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    pvg_reader_options o = {0};
    o.max_line_bytes = 4096;
    pvg_reader *r = NULL;
    pvg_error err;
    if (pvg_reader_open(path, (pvg_format)pick, &o, &r, &err) == PVG_OK) {
        pvg_record rec;
        while (pvg_reader_next(r, &rec, &err) == 1) {
            if (rec.kind == PVG_RECORD_REJECT && (!rec.reason || !rec.detail)) abort();
            if (rec.kind == PVG_RECORD_EVENT && (!rec.user || !*rec.user)) abort();
        }
        pvg_reader_free(r);
    }
    close(fd);
    return 0;
}
