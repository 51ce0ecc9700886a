/*
 * explain_route.c - "why this?" on the recommendations route
 * (GET /v1/users/{id}/recommendations?explain=1; docs/api.md
 * "Why this?"): each item of the answer gets a `why` array of evidence.
 *
 *   {"kind":"history", ...}  an item of the shopper's own history that
 *       makes the item score (pvg_model_explain), given only through the
 *       access gate (pvg_access_explain: the shopper's own token, their
 *       personalization consent, audited "explain" first); never for an
 *       operator key, another caller or a shopper without consent;
 *   {"kind":"popular", ...}  the item's rank in the public DP popular list
 *       in service (the DP model's, else the DP release): public.
 *
 * The answer says what was given under `explain`.
 */
#include "server/server_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WHY_HISTORY_K 3

void pvg_srv_recommend_why(pvg_srv_req *r, pvg_srv_model *m, pvg_srv_model *dm,
                           const pvg_srv_popular *pop, const char *user, int personalized,
                           json_t *answer);

/* The item's 1-based rank in the public popular list in service, 0 when
 * it is not there; *of gets the list's length. */
static size_t popular_rank(pvg_srv_model *dm, const pvg_srv_popular *pop, const char *id,
                           size_t *of)
{
    *of = 0;
    if (dm) {
        *of = dm->n_dp_popular;
        for (size_t i = 0; i < dm->n_dp_popular; i++) {
            const char *x = pvg_model_item_id(dm->model, dm->dp_popular[i]);
            if (x && strcmp(x, id) == 0) return i + 1;
        }
        return 0;
    }
    if (!pop) return 0;
    *of = pop->n;
    for (size_t i = 0; i < pop->n; i++)
        if (pop->items[i].ext_id && strcmp(pop->items[i].ext_id, id) == 0) return i + 1;
    return 0;
}

void pvg_srv_recommend_why(pvg_srv_req *r, pvg_srv_model *m, pvg_srv_model *dm,
                           const pvg_srv_popular *pop, const char *user, int personalized,
                           json_t *answer)
{
    json_t *items = json_object_get(answer, "items");
    size_t n = json_array_size(items);
    json_t *ex = json_object();
    json_object_set_new(ex, "popular_source",
                        json_string(dm    ? "dp_model"
                                    : pop ? "dp_release"
                                          : "none"));
    int64_t *idx = NULL;
    pvg_explain_term *terms = NULL;
    size_t *n_terms = NULL;
    pvg_explain_info *info = NULL;
    int got_history = 0;
    const char *reason = personalized ? NULL : "not_personalized";
    if (personalized && n) {
        idx = malloc(n * sizeof *idx);
        terms = calloc(n * WHY_HISTORY_K, sizeof *terms);
        n_terms = calloc(n, sizeof *n_terms);
        info = calloc(n, sizeof *info);
        if (!idx || !terms || !n_terms || !info) {
            reason = "error";
        } else {
            size_t ok = 1;
            for (size_t i = 0; i < n; i++) {
                const char *id =
                    json_string_value(json_object_get(json_array_get(items, i), "item"));
                idx[i] = id ? pvg_model_item_index(m->model, id) : -1;
                if (idx[i] < 0) ok = 0;
            }
            pvg_access g;
            pvg_srv_access_init(r, &g);
            pvg_error e;
            pvg_error_clear(&e);
            /* the gate decides (own token, consent) and audits first */
            pvg_status st = ok ? pvg_access_explain(&g, m->model, user, idx, n, WHY_HISTORY_K,
                                                    terms, n_terms, info, &got_history, &reason, &e)
                               : PVG_ERR_INTERNAL;
            if (st != PVG_OK) {
                got_history = 0;
                reason = "error"; /* e.g. the audit log: nothing personal unaudited */
            }
        }
    }
    json_object_set_new(ex, "history", json_boolean(got_history));
    if (!got_history && reason) json_object_set_new(ex, "reason", json_string(reason));
    if (got_history && n) {
        json_object_set_new(ex, "method", json_string(info[0].method));
        json_object_set_new(ex, "exact", json_boolean(info[0].exact));
    }
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(items, i);
        const char *id = json_string_value(json_object_get(it, "item"));
        json_t *why = json_array();
        for (size_t q = 0; got_history && q < n_terms[i]; q++) {
            const pvg_explain_term *t = &terms[i * WHY_HISTORY_K + q];
            const pvg_srv_catalog_entry *c = &m->catalog[t->item_index];
            json_array_append_new(
                why,
                json_pack("{s:s, s:s, s:o, s:f}", "kind", "history", "item", t->item ? t->item : "",
                          "title", c->title ? json_string(c->title) : json_null(), "contribution",
                          isfinite(t->contribution) ? t->contribution : 0.0));
        }
        size_t of = 0, rank = id ? popular_rank(dm, pop, id, &of) : 0;
        if (rank)
            json_array_append_new(why, json_pack("{s:s, s:I, s:I, s:s}", "kind", "popular", "rank",
                                                 (json_int_t)rank, "of", (json_int_t)of, "source",
                                                 dm ? "dp_model" : "dp_release"));
        json_object_set_new(it, "why", why);
    }
    json_object_set_new(answer, "explain", ex);
    free(idx);
    free(terms);
    free(n_terms);
    free(info);
}
