/*
 * query_internal.h - the query engine driven from shoppers' data held in
 * memory (not installed). The statistic, the contribution bounds and the
 * noise are computed by the same function as pvg_query_run; only the source
 * of the users and the ledger charge differ. Used by the empirical privacy
 * audit (tests/test_dp_release_types_audit.c), which runs a release 10^5
 * times: through a store every run would decrypt the users and commit a
 * ledger charge.
 */
#ifndef PVG_QUERY_INTERNAL_H
#define PVG_QUERY_INTERNAL_H

#include <privguide/query.h>

/* One shopper (with analytics consent): events in timestamp order, as
 * pvg_store_foreach_user hands them. Borrowed. */
typedef struct query_mem_user {
    const pvg_event *events;
    size_t n;
} query_mem_user;

/* The data of a query: the users in store order and the catalog (for
 * --group-by category; item ids as in pvg_event.item_id). Borrowed. */
typedef struct query_mem {
    const query_mem_user *users;
    size_t n_users;
    const pvg_item *items;
    size_t n_items;
} query_mem;

/* Runs the query of pvg_query_run over `mem` instead of a store and charges
 * nothing: the caller accounts for the release (the audit compares the
 * (epsilon, delta) in *out with what it measures). Contract, result and
 * errors otherwise as pvg_query_run (release_id 0). */
pvg_status query_run_mem(const query_mem *mem, const pvg_query_spec *spec, pvg_rng *rng,
                         pvg_query_result **out, pvg_error *err) PVG_WARN_UNUSED;

#endif
