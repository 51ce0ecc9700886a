/*
 * fairness_route.c - GET /v1/admin/fairness: the fairness report the
 * operator last kept with `privguide audit fairness --save` (an aggregate:
 * per-group figures and gaps, no shopper row), read from the data dir.
 * Admin only (the routes table). 404 with a JSON error when none is saved.
 */
#include "server/server_internal.h"

#include <privguide/fairness.h>

#include <stdlib.h>

void pvg_srv_h_fairness(pvg_srv_req *r);

void pvg_srv_h_fairness(pvg_srv_req *r)
{
    pvg_error err;
    pvg_error_clear(&err);
    char *text = NULL;
    pvg_status st = pvg_fair_report_load(r->srv->data_dir, &text, &err);
    if (st == PVG_ERR_NOT_FOUND) {
        pvg_srv_reply_error(r, 404, "not_found",
                            "no fairness report saved (privguide audit fairness --save)");
        return;
    }
    if (st != PVG_OK) {
        pvg_srv_reply_status(r, "fairness report", st, &err);
        return;
    }
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    free(text);
    if (!j) {
        pvg_srv_reply_error(r, 500, "internal", "fairness report: %s", je.text);
        return;
    }
    pvg_srv_reply_json(r, 200, j);
}
