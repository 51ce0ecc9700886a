/*
 * access_sink.c - the server's side of the access gate: a gate for one
 * request whose audit entries go through the server's group-commit audit
 * writer (the request waits until its entry is committed, or, through the
 * deferred gate, is suspended until then), and the answer when the gate
 * refused because the log could not be written.
 */
#include "server/server_internal.h"

static pvg_status srv_sink(void *ctx, const pvg_audit_record *rec, pvg_error *err)
{
    pvg_srv_req *r = ctx;
    pvg_status st =
        pvg_srv_audit_log(&r->srv->audit, rec->actor, rec->action, rec->subject, rec->detail);
    if (st != PVG_OK) {
        r->gate_audit_failed = 1;
        return pvg_error_set(err, st, "audit writer: %s", pvg_strerror(st));
    }
    return PVG_OK;
}

/* The writer's wake of a deferred entry (the writer thread, after the
 * commit or its failure): the gate learns the outcome first. */
static void srv_committed(void *ctx)
{
    pvg_srv_req *r = ctx;
    if (r->audit_result != PVG_OK) r->gate_audit_failed = 1;
    pvg_access_rec_committed(r->pend, r->audit_result);
    pvg_srv_req_ready(r);
}

pvg_status pvg_srv_access_enqueue(void *ctx, const pvg_audit_record *rec, pvg_access_rec_pending *p,
                                  pvg_error *err)
{
    pvg_srv_req *r = ctx;
    r->pend = p; /* before the entry is queued: the wake may come at once */
    r->audit_done = 0;
    r->audit_result = PVG_ERR_INTERNAL;
    pvg_status st =
        pvg_srv_audit_log_async(&r->srv->audit, rec->actor, rec->action, rec->subject, rec->detail,
                                &r->audit_done, &r->audit_result, srv_committed, r);
    if (st != PVG_OK) {
        r->pend = NULL;
        r->gate_audit_failed = 1;
        return pvg_error_set(err, st, "audit writer: %s", pvg_strerror(st));
    }
    return PVG_OK;
}

void pvg_srv_access_init(pvg_srv_req *r, pvg_access *g)
{
    pvg_access_init(g, pvg_srv_req_store(r), r->actor);
    g->audit = srv_sink;
    g->audit_ctx = r;
    r->gate_audit_failed = 0;
}

void pvg_srv_reply_access(pvg_srv_req *r, const char *what, pvg_status st, const pvg_error *err)
{
    if (r->gate_audit_failed)
        pvg_srv_reply_error(r, 503, "audit_unavailable",
                            "the audit log cannot be written (%s); personal data is not served",
                            pvg_strerror(st));
    else if (st == PVG_ERR_NOT_FOUND)
        pvg_srv_reply_error(r, 404, "not_found", "no data is held about this user");
    else if (st == PVG_ERR_POLICY)
        pvg_srv_reply_error(r, 403, "no_consent", "the user does not consent to this use");
    else
        pvg_srv_reply_status(r, what, st, err);
}
