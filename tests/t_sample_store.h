/*
 * t_sample_store.h - a store in a fresh temporary data dir with the bundled
 * Online Retail sample (data/online-retail-sample.csv.gz) ingested: the
 * catalog and shoppers the search-feed and DP-search tests read.
 */
#ifndef PVG_T_SAMPLE_STORE_H
#define PVG_T_SAMPLE_STORE_H

#include <privguide/store.h>

typedef struct t_sample_store {
    char dir[256]; /* /tmp/<prefix>_XXXXXX/d */
    pvg_store *s;
} t_sample_store;

/* A new fixture (free with t_sample_store_free) under /tmp/<prefix>_XXXXXX,
 * or NULL with the reason on stderr (a cmocka set-up's failure). */
t_sample_store *t_sample_store_new(const char *prefix);

/* Closes the store and removes the temporary dir. Returns 0 or -1. */
int t_sample_store_free(t_sample_store *x);

#endif
