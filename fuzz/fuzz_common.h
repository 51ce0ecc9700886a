/*
 * fuzz_common.h - helpers shared by the libFuzzer harnesses fuzz/fuzz_*.c.
 * Build and run: fuzz/run.sh [seconds [name...]] (see fuzz/README.md).
 */
#ifndef PVG_FUZZ_COMMON_H
#define PVG_FUZZ_COMMON_H

#include <privguide/common.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The input as a file the parsers can open by path: a memfd (mode 0600,
 * as a key file must be) reached through /proc/self/fd/N. Returns the fd
 * (close it when done) or -1; path receives the name. */
static inline int fuzz_file(const uint8_t *data, size_t size, char *path, size_t cap)
{
    int fd = memfd_create("pvg-fuzz", 0);
    if (fd < 0) return -1;
    if (fchmod(fd, 0600) != 0 || (size && write(fd, data, size) != (ssize_t)size)) {
        close(fd);
        return -1;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

/* The input as a NUL-terminated string (new; free()). */
static inline char *fuzz_text(const uint8_t *data, size_t size)
{
    char *t = malloc(size + 1);
    if (!t) abort();
    memcpy(t, data, size);
    t[size] = '\0';
    return t;
}

/* A parser that fails must say why. */
static inline void fuzz_check_error(pvg_status st, const pvg_error *err)
{
    if (st != PVG_OK && (err->code == PVG_OK || err->text[0] == '\0')) {
        fprintf(stderr, "status %d without an error message\n", (int)st);
        abort();
    }
}

#endif
