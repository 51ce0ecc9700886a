/*
 * t_sample_store.c - the sample-store fixture of t_sample_store.h.
 */
#include "t_sample_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int t_sample_catalogue_declare(pvg_store *s)
{
    const char *src = getenv("PVG_SOURCE_DIR");
    char tmp[] = "/tmp/pvg_sample_catalogue_XXXXXX", cmd[1200];
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(cmd, sizeof cmd, "gzip -dc '%s/data/online-retail-catalogue.tsv.gz' >'%s/c.tsv'",
             src ? src : ".", tmp);
    int rc = system(cmd) == 0 ? 0 : -1;
    if (rc != 0) fprintf(stderr, "sample catalogue: %s failed\n", cmd);
    char path[600];
    snprintf(path, sizeof path, "%s/c.tsv", tmp);
    pvg_error err;
    pvg_error_clear(&err);
    if (rc == 0 && pvg_store_catalog_import(s, path, PVG_CATALOG_TSV, NULL, &err) != PVG_OK) {
        fprintf(stderr, "sample catalogue: %s\n", err.text);
        rc = -1;
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) rc = -1;
    return rc;
}

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
        pvg_store_open(x->dir, &x->s, &err) != PVG_OK || t_sample_catalogue_declare(x->s) != 0 ||
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
