/*
 * t_sample_store.h - a store in a fresh temporary data dir with the bundled
 * Online Retail sample (data/online-retail-sample.csv.gz) ingested after
 * the shop's catalogue (data/online-retail-catalogue.tsv.gz) was declared:
 * the catalog and shoppers the search-feed and DP-search tests read.
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

/* Declares the sample's catalogue, data/online-retail-catalogue.tsv.gz
 * (as `make demo` does), in s: sale rows never make catalog items (the
 * public domain of DP releases), a catalogue load does. 0, or -1 with the
 * reason on stderr. */
int t_sample_catalogue_declare(pvg_store *s);

/* Closes the store and removes the temporary dir. Returns 0 or -1. */
int t_sample_store_free(t_sample_store *x);

#endif
