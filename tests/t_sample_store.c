/*
 * t_sample_store.c - the sample-store fixture of t_sample_store.h.
 */
#include "t_sample_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

t_sample_store *t_sample_store_new(const char *prefix)
{
    const char *src = getenv("PVG_SOURCE_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/data/online-retail-sample.csv.gz", src ? src : ".");
    t_sample_store *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    snprintf(x->dir, sizeof x->dir, "/tmp/%s_XXXXXX", prefix);
    if (!mkdtemp(x->dir)) {
        perror("mkdtemp");
        free(x);
        return NULL;
    }
    strcat(x->dir, "/d");
    pvg_error err;
    pvg_error_clear(&err);
    pvg_ingest_options io = {0};
    pvg_ingest_stats stats;
    if (pvg_store_init(x->dir, NULL, &err) != PVG_OK ||
        pvg_store_open(x->dir, &x->s, &err) != PVG_OK ||
        pvg_store_ingest_file(x->s, path, PVG_FORMAT_ONLINE_RETAIL, &io, &stats, &err) != PVG_OK) {
        fprintf(stderr, "sample store %s: %s\n", path, err.text);
        t_sample_store_free(x);
        return NULL;
    }
    return x;
}

int t_sample_store_free(t_sample_store *x)
{
    if (!x) return 0;
    pvg_store_free(x->s);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(strlen(x->dir) - 2), x->dir);
    int rc = system(cmd) == 0 ? 0 : -1;
    free(x);
    return rc;
}
