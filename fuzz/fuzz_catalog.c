/*
 * fuzz_catalog.c - libFuzzer harness for the declared catalogue's reader
 * (pvg_store_catalog_import, src/store/catalog.c: TSV or JSONL, the format
 * guessed from the first non-blank line) into a store made once per
 * process. A failure must say why and, for a bad line, where (the file and a line
 * it read); what was declared never exceeds the lines read; every declared
 * entry has a non-empty id and title without control characters (a tab
 * only inside a description). Seeds: fuzz/corpus/catalog/.
 */
#include "fuzz_common.h"

#include <privguide/store.h>

static pvg_store *g_store;
static char g_dir[256];

static void cleanup(void)
{
    pvg_store_free(g_store);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}

static void setup(void)
{
    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/pvg-fuzz-catalog-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) abort();
    atexit(cleanup);
    char dd[300];
    snprintf(dd, sizeof dd, "%s/data", g_dir);
    pvg_error err;
    if (pvg_store_init(dd, NULL, &err) != PVG_OK || pvg_store_open(dd, &g_store, &err) != PVG_OK) {
        fprintf(stderr, "store: %s\n", err.text);
        abort();
    }
}

static int clean(const char *s, int tab_ok)
{
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && !(tab_ok && *s == '\t')) || *s == 0x7f) return 0;
    return 1;
}

static int check_entry(void *ctx, const pvg_catalog_entry *e)
{
    (void)ctx;
    if (!e->ext_id || !*e->ext_id || !e->title || !*e->title) abort();
    if (!clean(e->ext_id, 0) || !clean(e->title, 0)) abort();
    if (e->description && !clean(e->description, 1)) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_store) setup();
    char path[64];
    int fd = fuzz_file(data, size, path, sizeof path);
    if (fd < 0) return 0;
    pvg_catalog_import_stats stats;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_store_catalog_import(g_store, path, PVG_CATALOG_AUTO, &stats, &err);
    close(fd);
    fuzz_check_error(st, &err);
    if (st != PVG_OK && st != PVG_ERR_INVALID && st != PVG_ERR_NOMEM) {
        fprintf(stderr, "unexpected status %d: %s\n", (int)st, err.text);
        abort();
    }
    if (st == PVG_ERR_INVALID &&
        (strcmp(err.source, path) != 0 || err.line < 1 || err.line > stats.lines)) {
        fprintf(stderr, "a bad line's error names %s:%ld, not a line of %s (%lld lines): %s\n",
                err.source, err.line, path, stats.lines, err.text);
        abort();
    }
    if (stats.declared > stats.lines) abort();
    pvg_error_clear(&err);
    if (pvg_store_catalog_foreach(g_store, check_entry, NULL, &err) != PVG_OK) abort();
    return 0;
}
