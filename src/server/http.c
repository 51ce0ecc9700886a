/*
 * http.c - the HTTP core of the service: libmicrohttpd daemon (epoll,
 * thread pool), request bodies with a size cap, dispatch through the routes
 * table with authentication, roles, per-user scoping and rate limits, JSON
 * answers and errors, the store pool, start and graceful stop.
 */
#include "server/server_internal.h"

#include <privguide/assistant.h>

#include "store/store_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double pvg_srv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

const char *pvg_server_default_model_path(const char *data_dir, char *buf, size_t len)
{
    snprintf(buf, len, "%s/model.pvgm", data_dir ? data_dir : ".");
    return buf;
}

const char *pvg_server_default_dp_model_path(const char *data_dir, char *buf, size_t len)
{
    snprintf(buf, len, "%s/model-dp.pvgm", data_dir ? data_dir : ".");
    return buf;
}

/* ---- store pool ------------------------------------------------------- */

pvg_store *pvg_srv_store_get(pvg_server *srv)
{
    pthread_mutex_lock(&srv->pool_mu);
    while (srv->n_free == 0)
        pthread_cond_wait(&srv->pool_cv, &srv->pool_mu);
    pvg_store *s = srv->stores[srv->free_idx[--srv->n_free]];
    pthread_mutex_unlock(&srv->pool_mu);
    return s;
}

void pvg_srv_store_put(pvg_server *srv, pvg_store *s)
{
    if (!s) return;
    pthread_mutex_lock(&srv->pool_mu);
    for (int i = 0; i < srv->n_stores; i++)
        if (srv->stores[i] == s) {
            srv->free_idx[srv->n_free++] = i;
            break;
        }
    pthread_cond_signal(&srv->pool_cv);
    pthread_mutex_unlock(&srv->pool_mu);
}

/* A fresh connection in place of *s (closed) when it opens; else *s stays. */
static pvg_status reopen(pvg_server *srv, pvg_store **s, int relaxed, pvg_error *err)
{
    pvg_store *n = NULL;
    pvg_status st = pvg_store_open(srv->data_dir, &n, err);
    if (st != PVG_OK) return st;
    if (relaxed)
        pvg_srv_audit_store_prepare(n);
    else
        pvg_srv_store_prepare(n);
    pvg_store_free(*s);
    *s = n;
    return PVG_OK;
}

pvg_status pvg_srv_keys_rotate(pvg_server *srv, pvg_store *mine, long long *rewrapped,
                               pvg_error *err)
{
    if (pthread_mutex_trylock(&srv->rotate_mu) != 0)
        return pvg_error_set(err, PVG_ERR_BUSY, "a master-key rotation is under way already");
    /* every other pool connection: the requests holding them finish first
     * (a request holds at most one, and none waits for the writer's lock or
     * the loader while it waits for a connection) */
    int others = srv->n_stores - 1;
    for (int i = 0; i < others; i++)
        (void)pvg_srv_store_get(srv);
    pthread_mutex_lock(&srv->reload_mu);
    pvg_srv_audit_writer *w = &srv->audit;
    pthread_mutex_lock(&w->mu); /* new entries wait; the writer finishes its batch */
    /* ... and the checkpoint passes, which use the writer's connection */
    while (w->committed_upto != w->enqueued || w->ckpt_running || w->own_running)
        pthread_cond_wait(&w->cv_done, &w->mu);
    /* the monitor's and the index builder's connections: their threads
     * finish their pass and wait */
    pvg_store **mon = pvg_srv_monitor_hold(srv), **six = pvg_srv_search_hold(srv);
    pvg_status st = pvg_store_keys_rotate(mine, rewrapped, err);
    /* every other connection still holds the old key (or, after a failure
     * midway, not the next one): reopen them all, whatever the outcome */
    pvg_error e2;
    pvg_status st2 = PVG_OK;
    for (int i = 0; i < srv->n_stores; i++)
        if (srv->stores[i] != mine) {
            pvg_status x = reopen(srv, &srv->stores[i], 0, &e2);
            if (x != PVG_OK && st2 == PVG_OK) st2 = x;
        }
    pvg_status x = reopen(srv, &srv->audit_store, 1, &e2);
    if (x != PVG_OK && st2 == PVG_OK) st2 = x;
    w->store = srv->audit_store;
    w->ckpt_log = w->ckpt_done = -1;
    x = reopen(srv, &srv->reload_store, 0, &e2);
    if (x != PVG_OK && st2 == PVG_OK) st2 = x;
    if (mon) {
        x = reopen(srv, mon, 0, &e2);
        if (x != PVG_OK && st2 == PVG_OK) st2 = x;
        pvg_srv_monitor_release(srv);
    }
    if (six) {
        x = reopen(srv, six, 0, &e2);
        if (x != PVG_OK && st2 == PVG_OK) st2 = x;
        pvg_srv_search_release(srv);
    }
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_unlock(&srv->reload_mu);
    /* give the connections back (the pool's free list names indices) */
    pthread_mutex_lock(&srv->pool_mu);
    srv->n_free = 0;
    for (int i = 0; i < srv->n_stores; i++)
        if (srv->stores[i] != mine) srv->free_idx[srv->n_free++] = i;
    pthread_cond_broadcast(&srv->pool_cv);
    pthread_mutex_unlock(&srv->pool_mu);
    pthread_mutex_unlock(&srv->rotate_mu);
    if (st == PVG_OK && st2 != PVG_OK)
        return pvg_error_set(err, st2,
                             "the master key was rotated, but a server connection could not be "
                             "reopened with the new key (%s): restart the server",
                             e2.text);
    return st;
}

pvg_store *pvg_srv_req_store(pvg_srv_req *r)
{
    if (!r->store) r->store = pvg_srv_store_get(r->srv);
    return r->store;
}

const char *pvg_srv_req_query(pvg_srv_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

typedef struct query_count {
    const char *name;
    unsigned n;
} query_count;

static enum MHD_Result count_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    (void)value;
    query_count *q = cls;
    if (key && strcmp(key, q->name) == 0) q->n++;
    return MHD_YES;
}

int pvg_srv_req_query_one(pvg_srv_req *r, const char *name, const char **out)
{
    *out = NULL;
    query_count q = {name, 0};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, count_query, &q);
    if (q.n == 0) return 0;
    const char *v = NULL;
    size_t len = 0;
    if (q.n > 1) {
        pvg_srv_reply_error(r, 400, "invalid", "query parameter %s: given %u times, once expected",
                            name, q.n);
        return -1;
    }
    if (MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name), &v,
                                      &len) != MHD_YES)
        return 0; /* a name without '=': no value */
    if (v && strlen(v) != len) {
        pvg_srv_reply_error(r, 400, "invalid",
                            "query parameter %s: byte %zu of its decoded value is a NUL (%%00); "
                            "text without NUL bytes was expected",
                            name, strlen(v));
        return -1;
    }
    *out = v;
    return 0;
}

/* ---- deferred recommendations ------------------------------------------ */

int pvg_srv_req_suspend(pvg_srv_req *r)
{
    pvg_server *srv = r->srv;
    pthread_mutex_lock(&srv->fin_mu);
    int ok = srv->n_fin > 0 && !srv->fin_closed;
    if (ok) srv->fin_suspended++;
    pthread_mutex_unlock(&srv->fin_mu);
    if (!ok) return -1;
    /* suspended before the entry is queued: a resume can only follow */
    MHD_suspend_connection(r->conn);
    r->async = 1;
    return 0;
}

void pvg_srv_req_resume_now(pvg_srv_req *r)
{
    MHD_resume_connection(r->conn);
}

void pvg_srv_req_ready(pvg_srv_req *r)
{
    /* the writer thread only: the group is staged, then queued whole */
    pvg_server *srv = r->srv;
    r->ready_next = NULL;
    if (srv->group_tail)
        srv->group_tail->ready_next = r;
    else
        srv->group_head = r;
    srv->group_tail = r;
}

/* The audit writer's on_group: the group's requests join the queue at once
 * (a finisher never takes part of a group), and a finisher is woken. */
static void fin_kick(void *ctx)
{
    pvg_server *srv = ctx;
    if (!srv->group_head) return;
    pthread_mutex_lock(&srv->fin_mu);
    if (srv->ready_tail)
        srv->ready_tail->ready_next = srv->group_head;
    else
        srv->ready_head = srv->group_head;
    srv->ready_tail = srv->group_tail;
    pthread_cond_signal(&srv->fin_cv);
    pthread_mutex_unlock(&srv->fin_mu);
    srv->group_head = srv->group_tail = NULL;
}

/* A finisher: takes everything ready (one commit group or more, up to
 * PVG_SRV_FINISH_MAX), answers it through the gate's finish (one batch of
 * scoring) and resumes the connections. */
static void *fin_main(void *arg)
{
    pvg_server *srv = arg;
    pvg_srv_req *batch[PVG_SRV_FINISH_MAX];
    pthread_mutex_lock(&srv->fin_mu);
    for (;;) {
        while (!srv->ready_head && !srv->fin_stop)
            pthread_cond_wait(&srv->fin_cv, &srv->fin_mu);
        if (!srv->ready_head) break; /* stopping, nothing left */
        size_t n = 0;
        while (srv->ready_head && n < PVG_SRV_FINISH_MAX) {
            batch[n++] = srv->ready_head;
            srv->ready_head = srv->ready_head->ready_next;
        }
        if (!srv->ready_head)
            srv->ready_tail = NULL;
        else
            pthread_cond_signal(&srv->fin_cv); /* the rest to another finisher */
        pthread_mutex_unlock(&srv->fin_mu);
        pvg_srv_recommend_finish(batch, n);
        for (size_t i = 0; i < n; i++)
            MHD_resume_connection(batch[i]->conn); /* the connection's thread sends it */
        pthread_mutex_lock(&srv->fin_mu);
    }
    pthread_mutex_unlock(&srv->fin_mu);
    return NULL;
}

static int fin_start(pvg_server *srv)
{
    pthread_mutex_init(&srv->fin_mu, NULL);
    pthread_cond_init(&srv->fin_cv, NULL);
    pthread_cond_init(&srv->fin_idle_cv, NULL);
    srv->fin_init = 1;
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    int want = nc < 1 ? 1 : nc > PVG_SRV_FINISHERS_MAX ? PVG_SRV_FINISHERS_MAX : (int)nc;
    for (int i = 0; i < want; i++) {
        if (pthread_create(&srv->fin_threads[i], NULL, fin_main, srv) != 0) break;
        pthread_mutex_lock(&srv->fin_mu);
        srv->n_fin++;
        pthread_mutex_unlock(&srv->fin_mu);
    }
    return srv->n_fin > 0 ? 0 : -1;
}

/* No new suspension; waits until every suspended request was answered, its
 * connection resumed and its answer sent or its connection closed
 * (on_completed; the audit writer, the finishers and the daemon's threads
 * still run: each is bounded by a commit, a scoring pass and the
 * connection timeout). */
static void fin_close(pvg_server *srv)
{
    if (!srv->fin_init) return;
    pthread_mutex_lock(&srv->fin_mu);
    srv->fin_closed = 1;
    while (srv->fin_suspended > 0)
        pthread_cond_wait(&srv->fin_idle_cv, &srv->fin_mu);
    pthread_mutex_unlock(&srv->fin_mu);
}

/* on_completed: r's deferred answer left (or its connection closed): one
 * suspended request fewer. */
static void fin_left(pvg_srv_req *r)
{
    pvg_server *srv = r->srv;
    r->async = 0;
    pthread_mutex_lock(&srv->fin_mu);
    if (--srv->fin_suspended == 0) pthread_cond_broadcast(&srv->fin_idle_cv);
    pthread_mutex_unlock(&srv->fin_mu);
}

static void fin_stop(pvg_server *srv)
{
    if (!srv->fin_init) return;
    pthread_mutex_lock(&srv->fin_mu);
    srv->fin_closed = 1;
    srv->fin_stop = 1;
    pthread_cond_broadcast(&srv->fin_cv);
    int n = srv->n_fin;
    srv->n_fin = 0;
    pthread_mutex_unlock(&srv->fin_mu);
    for (int i = 0; i < n; i++)
        pthread_join(srv->fin_threads[i], NULL);
}

/* ---- answers ------------------------------------------------------------ */

/* Drops a shared answer that was not handed to a response. */
static void shared_drop(pvg_srv_req *r)
{
    if (r->out_release) r->out_release(r->out_ref);
    r->out_release = NULL;
    r->out_ref = NULL;
    r->out_shared = NULL;
}

void pvg_srv_reply_shared(pvg_srv_req *r, int status, const char *ctype, const void *data,
                          size_t len, void (*release)(void *ref), void *ref)
{
    free(r->out);
    r->out = NULL;
    shared_drop(r);
    r->status = status;
    r->ctype = ctype;
    r->out_shared = data;
    r->out_len = len;
    r->out_release = release;
    r->out_ref = ref;
}

void pvg_srv_reply_json(pvg_srv_req *r, int status, json_t *j)
{
    shared_drop(r);
    free(r->out);
    r->out = NULL;
    r->out_len = 0;
    r->status = status;
    r->ctype = "application/json";
    if (j) {
        r->out = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
        json_decref(j);
    }
    if (!r->out) {
        r->status = 500;
        r->out = strdup("{\"error\":\"internal\",\"message\":\"cannot encode the answer\"}");
    }
    r->out_len = r->out ? strlen(r->out) : 0;
}

void pvg_srv_reply_error(pvg_srv_req *r, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pvg_srv_reply_json(
        r, status, json_pack("{s:s, s:s, s:i}", "error", code, "message", msg, "status", status));
}

void pvg_srv_reply_status(pvg_srv_req *r, const char *what, pvg_status st, const pvg_error *err)
{
    const char *why = err && err->code != PVG_OK && err->text[0] ? err->text : pvg_strerror(st);
    switch (st) {
    case PVG_ERR_INVALID:
        pvg_srv_reply_error(r, 400, "invalid", "%s: %s", what, why);
        break;
    case PVG_ERR_NOT_FOUND:
        pvg_srv_reply_error(r, 404, "not_found", "%s: %s", what, why);
        break;
    case PVG_ERR_POLICY:
        pvg_srv_reply_error(r, 422, "policy", "%s: %s", what, why);
        break;
    case PVG_ERR_PERMISSION:
        pvg_srv_reply_error(r, 403, "forbidden", "%s: %s", what, why);
        break;
    case PVG_ERR_BUDGET:
        pvg_srv_reply_error(r, 409, "budget", "%s: %s", what, why);
        break;
    case PVG_ERR_BUSY:
        pvg_srv_reply_error(r, 503, "busy", "%s: %s", what, why);
        break;
    case PVG_ERR_EXISTS:
        pvg_srv_reply_error(r, 409, "exists", "%s: %s", what, why);
        break;
    case PVG_ERR_ERASED:
        pvg_srv_reply_error(r, 410, "erased", "%s: %s", what, why);
        break;
    default:
        pvg_srv_reply_error(r, 500, "internal", "%s: %s", what, why);
        break;
    }
}

long long pvg_srv_json_depth_exceeded(const char *t, size_t n, int max_depth)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"')
            in_str = 1;
        else if (c == '[' || c == '{') {
            if (++depth > max_depth) return (long long)i;
        } else if (c == ']' || c == '}')
            depth--;
    }
    return -1;
}

json_t *pvg_srv_req_json(pvg_srv_req *r)
{
    if (!r->body || r->body_len == 0) {
        pvg_srv_reply_error(r, 400, "bad_json", "request body: a JSON document is required");
        return NULL;
    }
    long long at = pvg_srv_json_depth_exceeded(r->body, r->body_len, r->srv->opt.max_json_depth);
    if (at >= 0) {
        pvg_srv_reply_error(r, 400, "bad_json",
                            "request body: byte %lld: nesting deeper than %d levels", at,
                            r->srv->opt.max_json_depth);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        pvg_srv_reply_json(r, 400,
                           json_pack("{s:s, s:s, s:i, s:I, s:i, s:i}", "error", "bad_json",
                                     "message", je.text, "status", 400, "position",
                                     (json_int_t)je.position, "line", je.line, "column",
                                     je.column));
        /* also say where in the message */
        char msg[400];
        snprintf(msg, sizeof msg, "request body: byte %d (line %d, column %d): %s", je.position,
                 je.line, je.column, je.text);
        json_t *o = json_loads(r->out, 0, NULL);
        if (o) {
            json_object_set_new(o, "message", json_string(msg));
            pvg_srv_reply_json(r, 400, o);
        }
        return NULL;
    }
    return j;
}

/* ---- dispatch ------------------------------------------------------------ */

static unsigned role_bit(pvg_role role)
{
    switch (role) {
    case PVG_ROLE_ADMIN:
        return PVG_SRV_ADMIN;
    case PVG_ROLE_ANALYST:
        return PVG_SRV_ANALYST;
    case PVG_ROLE_USER:
        return PVG_SRV_USER;
    default:
        return 0;
    }
}

/* Counts a failed authentication against the client's address; 1 when the
 * address is over its limit (the answer becomes 429). */
static int auth_failure_limited(pvg_srv_req *r)
{
    if (r->srv->opt.auth_failure_rate < 0) return 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char key[PVG_AUTH_ID_HEX + 1] = "ip-unknown";
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ci->client_addr;
        snprintf(key, sizeof key, "ip%08x", (unsigned)ntohl(sin->sin_addr.s_addr));
    }
    double retry = 0;
    if (pvg_srv_ratelimit_take(&r->srv->rl, key, r->srv->opt.auth_failure_rate, pvg_srv_now(),
                               &retry))
        return 0;
    atomic_fetch_add(&r->srv->metrics.rate_limited, 1);
    snprintf(r->retry_after, sizeof r->retry_after, "%d", (int)(retry + 0.999));
    pvg_srv_reply_error(r, 429, "rate_limited",
                        "too many failed authentications from this address; retry after %.3f s",
                        retry);
    return 1;
}

/* The client's address as text ("" when unknown). */
static void client_addr(pvg_srv_req *r, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    buf[0] = 0;
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, buf,
                  (socklen_t)len);
}

/* Tells access monitoring of a failed authentication. */
static void observe_failure(pvg_srv_req *r)
{
    if (!r->srv->monitor) return;
    char addr[64];
    client_addr(r, addr, sizeof addr);
    pvg_srv_monitor_observe(r->srv, NULL, addr, 1);
}

/* A refused credential (none, another scheme, or not valid): counted,
 * told to access monitoring, and answered 401 with msg, or 429 when the
 * client's address is over its failure limit. Returns -1. */
static int refuse_credential(pvg_srv_req *r, const char *msg)
{
    atomic_fetch_add(&r->srv->metrics.auth_failures, 1);
    observe_failure(r);
    if (auth_failure_limited(r)) return -1;
    pvg_srv_reply_error(r, 401, "unauthorized", "%s", msg);
    return -1;
}

int pvg_srv_authenticate(pvg_srv_req *r)
{
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (!h || !*h)
        return refuse_credential(r, "a credential is required: send \"Authorization: Bearer "
                                    "<API key or user token>\"");
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return refuse_credential(r,
                                 "Authorization: want the Bearer scheme (\"Bearer <credential>\")");
    const char *cred = h + 7;
    while (*cred == ' ')
        cred++;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_srv_auth_check(r->srv, pvg_srv_req_store(r), cred, &r->who, &e);
    if (st == PVG_ERR_PERMISSION) return refuse_credential(r, e.text);
    if (st == PVG_ERR_STATE) { /* suspended by access monitoring or an admin */
        pvg_srv_reply_error(r, 403, "suspended", "%s", e.text);
        return -1;
    }
    if (st != PVG_OK) {
        pvg_srv_reply_status(r, "authentication", st, &e);
        return -1;
    }
    snprintf(r->actor, sizeof r->actor, "%s:%s", r->who.role == PVG_ROLE_USER ? "token" : "key",
             r->who.key_id);
    if (r->srv->monitor) {
        char addr[64];
        client_addr(r, addr, sizeof addr);
        pvg_srv_monitor_observe(r->srv, r->actor, addr, 0);
    }
    double retry = 0;
    double rate = pvg_srv_monitor_rate(r->srv, r->who.key_id, r->who.rate_per_s);
    if (!pvg_srv_ratelimit_take(&r->srv->rl, r->who.key_id, rate, pvg_srv_now(), &retry)) {
        atomic_fetch_add(&r->srv->metrics.rate_limited, 1);
        snprintf(r->retry_after, sizeof r->retry_after, "%d", (int)(retry + 0.999));
        pvg_srv_reply_error(r, 429, "rate_limited",
                            "rate limit of %.3g requests/s exceeded; retry after %.3f s", rate,
                            retry);
        return -1;
    }
    return 0;
}

static void authenticate_and_run(pvg_srv_req *r)
{
    const pvg_srv_route *rt = &pvg_srv_routes()[r->route];
    snprintf(r->actor, sizeof r->actor, "public");
    if (!(rt->access & PVG_SRV_PUBLIC)) {
        if (pvg_srv_authenticate(r) != 0) return;
        if (!(rt->access & role_bit(r->who.role))) {
            pvg_srv_reply_error(r, 403, "forbidden", "role %s may not call %s %s",
                                pvg_role_name(r->who.role), rt->method, rt->pattern);
            return;
        }
        if ((rt->access & PVG_SRV_OWN) && r->who.role == PVG_ROLE_USER &&
            !pvg_auth_may_access_user(pvg_srv_req_store(r), &r->who, r->params[0])) {
            pvg_srv_reply_error(r, 403, "forbidden",
                                "this token reaches only its own user's resources");
            return;
        }
    }
    rt->handler(r);
}

static enum MHD_Result send_answer(pvg_srv_req *r)
{
    if (!r->out && !r->out_release)
        pvg_srv_reply_error(r, 500, "internal", "no answer was produced");
    struct MHD_Response *resp = NULL;
    if (!r->out) {
        /* a shared body (pvg_srv_reply_shared): sent from where it is, released by the
           response when it is done with it; every client's GET of one broadcast sends
           the same bytes without copying them */
        resp = MHD_create_response_from_buffer_with_free_callback_cls(
            r->out_len, (void *)r->out_shared, r->out_release, r->out_ref);
        if (!resp) return MHD_NO; /* released in on_completed */
        r->out_release = NULL;    /* the response's now */
        r->out_ref = NULL;
        r->out_shared = NULL;
    } else {
        resp = MHD_create_response_from_buffer(r->out_len, r->out, MHD_RESPMEM_MUST_FREE);
        if (!resp) return MHD_NO;
        r->out = NULL; /* owned by the response now */
    }
    MHD_add_response_header(resp, "Content-Type", r->ctype ? r->ctype : "application/json");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    if (r->ctype && strncmp(r->ctype, "text/html", 9) == 0) {
        /* WebAssembly compilation only on the pages of the browser federated
           client; every other page keeps script-src 'self' alone */
        const char *q = r->url ? strchr(r->url, '?') : NULL;
        size_t ul = r->url ? (q ? (size_t)(q - r->url) : strlen(r->url)) : 0;
        int wasm =
            (ul == strlen(PVG_SRV_WASM_PAGE) && memcmp(r->url, PVG_SRV_WASM_PAGE, ul) == 0) ||
            (ul == strlen(PVG_SRV_WASM_SHOP) && memcmp(r->url, PVG_SRV_WASM_SHOP, ul) == 0);
        MHD_add_response_header(resp, "Content-Security-Policy",
                                wasm ? "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; "
                                       "img-src 'self' data:; object-src 'none'; "
                                       "frame-ancestors 'none'"
                                     : "default-src 'self'; script-src 'self'; "
                                       "img-src 'self' data:; object-src 'none'; "
                                       "frame-ancestors 'none'");
    }
    if (r->status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (r->retry_after[0]) MHD_add_response_header(resp, "Retry-After", r->retry_after);
    if (r->allow[0]) MHD_add_response_header(resp, "Allow", r->allow);
    if (atomic_load(&r->srv->draining) || r->too_large)
        MHD_add_response_header(resp, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void finish(pvg_srv_req *r)
{
    if (r->store) {
        pvg_srv_store_put(r->srv, r->store);
        r->store = NULL;
    }
}

/* The methods the routes table has for path (each once, in table order). */
static void compute_allow(pvg_srv_req *r, const char *path)
{
    char params[PVG_SRV_MAX_PARAMS][256];
    const pvg_srv_route *rt = pvg_srv_routes();
    r->allow[0] = 0;
    for (size_t i = 0; i < pvg_srv_routes_count(); i++) {
        const char *m = rt[i].method;
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(rt[k].method, m) == 0;
        if (seen || pvg_srv_route_match(m, path, params) < 0) continue;
        if (r->allow[0]) strncat(r->allow, ", ", sizeof r->allow - strlen(r->allow) - 1);
        strncat(r->allow, m, sizeof r->allow - strlen(r->allow) - 1);
    }
}

/* The tracked state of conn (pvg_srv_conn), NULL when untracked. */
static pvg_srv_conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* libmicrohttpd's URI log callback, called once a request's line is read
 * (before its headers): the connection is busy from here, so the stop does
 * not end the reads of a connection whose request's headers or body are
 * still on the way (a request line still incomplete is not seen: the stop
 * may cut it, see close_idle). The request's state (*con_cls) starts NULL. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)uri;
    pvg_srv_conn *tc = conn_of(conn);
    if (tc) atomic_store(&tc->state, PVG_SRV_CONN_BUSY);
    return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    pvg_server *srv = cls;
    pvg_srv_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->srv = srv;
        r->conn = conn;
        r->t0 = pvg_srv_now();
        r->route = -1;
        atomic_fetch_add(&srv->inflight, 1);
        pvg_srv_conn *tc = conn_of(conn);
        if (tc) atomic_store(&tc->state, PVG_SRV_CONN_BUSY);
        *con_cls = r;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno || end == cl || v > srv->opt.max_body_bytes) r->too_large = 1;
            /* only noted: reserving it here, before a byte of body or any credential,
               let any caller make the server hold max_body_bytes per connection for
               nothing; the buffer grows with what arrives, up to this length */
            if (!r->too_large) r->body_declared = (size_t)v;
        }
        if (r->too_large) { /* answer at once; the body is never read */
            r->method = method;
            r->url = url;
            pvg_srv_reply_error(r, 413, "too_large", "request body larger than %zu bytes",
                                srv->opt.max_body_bytes);
            return send_answer(r);
        }
        return MHD_YES;
    }
    if (r->async) {
        /* resumed: the deferred answer is in r. It counts as suspended
         * until it has left (on_completed), so a stop waiting in fin_close
         * cannot close the connection while the answer is still queued */
        r->async = 2;
        finish(r);
        return send_answer(r);
    }
    r->method = method;
    r->url = url;
    if (*upload_size) {
        if (!r->too_large) {
            if (r->body_len + *upload_size > srv->opt.max_body_bytes) {
                r->too_large = 1;
                pvg_srv_body_give(srv, r->body, r->body_cap, r->body_len + 1);
                r->body = NULL;
                r->body_len = r->body_cap = 0;
            } else {
                size_t need = r->body_len + *upload_size + 1;
                if (need > r->body_cap) {
                    size_t cap = r->body_cap ? r->body_cap : 4096;
                    while (cap < need)
                        cap *= 2;
                    /* at most twice the bytes received, and never past the declared
                       length when it holds the body: its last step ends there exactly */
                    if (r->body_declared && r->body_declared + 1 >= need &&
                        cap > r->body_declared + 1)
                        cap = r->body_declared + 1;
                    /* a large body goes into a kept buffer (body_pool.c) of its declared
                       length if one fits (memory already held); else a buffer above 1 MiB
                       (a mapping) grows by mremap, its bytes not copied; else into a new
                       one of the grown size, in huge pages above 1 MiB. The declared
                       length itself is never mapped ahead of the bytes */
                    size_t kept = 0;
                    char *b = pvg_srv_body_take(
                        srv, r->body_declared >= need ? r->body_declared + 1 : cap, &kept);
                    if (b) {
                        if (r->body_len) memcpy(b, r->body, r->body_len);
                        pvg_srv_body_give(srv, r->body, r->body_cap, r->body_len + 1);
                        cap = kept;
                    } else if ((b = pvg_srv_body_grow(r->body, r->body_cap, cap)) != NULL) {
                        /* its pages moved: nothing copied, nothing left at the old address */
                    } else if ((b = pvg_srv_body_new(cap)) != NULL) {
                        if (r->body_len) memcpy(b, r->body, r->body_len);
                        pvg_srv_body_give(srv, r->body, r->body_cap, r->body_len + 1);
                    } else if (cap > PVG_SRV_BODY_HUGE_MIN) {
                        return MHD_NO; /* out of memory (a mapping is not realloc'd) */
                    } else {
                        /* not realloc: the old buffer's bytes are wiped
                           before it goes back to the heap */
                        if (!(b = malloc(cap))) return MHD_NO;
                        if (r->body_len) memcpy(b, r->body, r->body_len);
                        pvg_srv_body_give(srv, r->body, r->body_cap, r->body_len + 1);
                    }
                    r->body = b;
                    r->body_cap = cap;
                }
                memcpy(r->body + r->body_len, upload_data, *upload_size);
                r->body_len += *upload_size;
                r->body[r->body_len] = 0;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    /* the whole request is here */
    if (r->too_large) {
        pvg_srv_reply_error(r, 413, "too_large", "request body larger than %zu bytes",
                            srv->opt.max_body_bytes);
    } else if (strlen(url) > 2048) {
        pvg_srv_reply_error(r, 414, "uri_too_long", "request path longer than 2048 bytes");
    } else {
        r->route = pvg_srv_route_match(method, url, r->params);
        if (r->route == -1) {
            pvg_srv_reply_error(r, 404, "not_found", "no route %s %s", method, url);
        } else if (r->route == -2) {
            compute_allow(r, url);
            pvg_srv_reply_error(r, 405, "method_not_allowed",
                                "%s is not allowed on %s (allowed: %s)", method, url, r->allow);
        } else if (strncmp(pvg_srv_routes()[r->route].pattern, "/v1/users/{id}", 14) == 0 &&
                   pvg_user_id_normalize(r->params[0], r->params[0], sizeof r->params[0], NULL,
                                         NULL) != PVG_OK) {
            pvg_srv_reply_error(
                r, 400, "bad_user_id",
                "the user id in the path is empty, too long or has control characters");
        } else {
            authenticate_and_run(r);
        }
    }
    finish(r);
    if (r->async) return MHD_YES; /* suspended: the answer comes after the audit commit */
    return send_answer(r);
}

/* The inode of the socket open as fd, 0 when fd is not open. Socket inodes
 * are not reused while a socket lives, so (fd, inode) names one socket even
 * when its number was closed and given to another. */
static unsigned long long sock_ino(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? (unsigned long long)st.st_ino : 0;
}

/* Removes the socket (fd, ino) from the stop's hand-over list (when there). */
static void handed_drop(pvg_server *srv, int fd, unsigned long long ino)
{
    pthread_mutex_lock(&srv->handed_mu);
    int n = atomic_load(&srv->n_handed);
    for (int i = 0; i < n; i++)
        if (srv->handed[i].fd == fd && srv->handed[i].ino == ino) {
            srv->handed[i] = srv->handed[n - 1];
            atomic_store(&srv->n_handed, n - 1);
            break;
        }
    pthread_mutex_unlock(&srv->handed_mu);
}

/* Drops the hand-over entries whose socket libmicrohttpd closed without
 * starting it (a worker at its connection limit closes a queued connection
 * without a notice): its number is closed or names another socket now. */
static void handed_prune(pvg_server *srv)
{
    pthread_mutex_lock(&srv->handed_mu);
    int n = atomic_load(&srv->n_handed);
    for (int i = 0; i < n;)
        if (sock_ino(srv->handed[i].fd) != srv->handed[i].ino) {
            srv->handed[i] = srv->handed[--n];
            atomic_store(&srv->n_handed, n);
        } else
            i++;
    pthread_mutex_unlock(&srv->handed_mu);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    pvg_server *srv = cls;
    pvg_srv_conn *tc = conn_of(conn);
    if (tc) {
        /* kept alive after this answer: idle, a new idle period (idle_seq,
         * counted first: the stop reads state, then idle_seq). The stop
         * closes it once it has seen it idle twice (close_idle); not here,
         * even during a stop: libmicrohttpd may hold the next request's
         * first bytes in its buffer and read its request line only after
         * this call. */
        atomic_fetch_add(&tc->idle_seq, 1);
        atomic_store(&tc->state, PVG_SRV_CONN_IDLE);
    }
    pvg_srv_req *r = *con_cls;
    if (!r) return;
    if (r->async) {
        if (r->rec || r->pend) {
            /* still with the writer or a finisher (cannot happen: a suspended
             * connection is neither served nor closed before its resume,
             * and the server stops only when none is suspended); never
             * free what they hold */
            *con_cls = NULL;
            return;
        }
        fin_left(r); /* resumed: its answer left, or its connection closed */
    }
    finish(r);
    int route = r->route >= 0 ? r->route : (int)pvg_srv_routes_count();
    if (r->status) {
        double took = pvg_srv_now() - r->t0;
        pvg_srv_metrics_observe(&srv->metrics, route, r->status, took);
        pvg_srv_ts_observe(&srv->ts, r->status, took);
    }
    pvg_srv_body_give(srv, r->body, r->body_cap, r->body_len + 1);
    free(r->out);
    shared_drop(r);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->inflight, 1);
}

/* libmicrohttpd's connection notice, in the connection's worker. Started:
 * the connection is tracked (conns, for the stop to close it when idle);
 * when the stop handed it over (its socket is in the hand-over list), it is
 * libmicrohttpd's now, counted in its connections: the stop's drain stops
 * counting it. Closed (before libmicrohttpd closes the socket): untracked,
 * under conns_mu, so the stop never shuts a socket number that was reused.
 * A connection whose tracking memory cannot be had is served untracked (the
 * stop then waits for it until the idle timeout or the drain's end). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    pvg_server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        pvg_srv_conn *tc = *socket_context;
        if (!tc) return;
        pthread_mutex_lock(&srv->conns_mu);
        if (tc->prev)
            tc->prev->next = tc->next;
        else
            srv->conns = tc->next;
        if (tc->next) tc->next->prev = tc->prev;
        pthread_mutex_unlock(&srv->conns_mu);
        free(tc);
        *socket_context = NULL;
        return;
    }
    if (toe != MHD_CONNECTION_NOTIFY_STARTED) return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return;
    int fd = ci->connect_fd;
    pvg_srv_conn *tc = calloc(1, sizeof *tc);
    if (tc) {
        tc->fd = fd;
        atomic_init(&tc->state, PVG_SRV_CONN_FRESH);
        pthread_mutex_lock(&srv->conns_mu);
        tc->next = srv->conns;
        if (tc->next) tc->next->prev = tc;
        srv->conns = tc;
        pthread_mutex_unlock(&srv->conns_mu);
        *socket_context = tc;
    }
    if (atomic_load(&srv->n_handed) > 0) handed_drop(srv, fd, sock_ino(fd));
}

/* One sweep of the stop's close of the idle keep-alive connections: a
 * connection idle in this sweep and in the one before, in the same idle
 * period (idle_seq unchanged), gets its reads ended (shutdown SHUT_RD; a
 * request already in the socket's buffer is still read), and
 * libmicrohttpd closes an idle connection whose read ends. Idle in one
 * sweep only is not enough: its worker may be between the answer's end
 * (on_completed) and the request line of a pipelined request already in
 * its buffer (on_uri); the stop's sweeps are 1 to 5 ms apart. Connections
 * with a request under way and those that have not sent one yet are left
 * to the drain. Called by the stop only (seen, shut). */
static void close_idle(pvg_server *srv)
{
    pthread_mutex_lock(&srv->conns_mu);
    for (pvg_srv_conn *tc = srv->conns; tc; tc = tc->next) {
        int idle = atomic_load(&tc->state) == PVG_SRV_CONN_IDLE;
        unsigned seq = atomic_load(&tc->idle_seq);
        if (idle && !tc->shut && tc->seen == seq) {
            (void)shutdown(tc->fd, SHUT_RD);
            tc->shut = 1;
        }
        tc->seen = seq;
    }
    pthread_mutex_unlock(&srv->conns_mu);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    (void)fmt;
    (void)ap; /* the library never prints; failures show in answers and metrics */
}

/* ---- lifecycle ------------------------------------------------------------ */

static char *dup_or(const char *s, const char *def)
{
    return s ? strdup(s) : def ? strdup(def) : NULL;
}

static void server_destroy(pvg_server *srv)
{
    if (!srv) return;
    pvg_srv_model_shutdown(srv);
    pvg_srv_search_free(srv);
    pvg_srv_audit_writer_stop(&srv->audit);
    fin_stop(srv);
    if (srv->fin_init) {
        pthread_mutex_destroy(&srv->fin_mu);
        pthread_cond_destroy(&srv->fin_cv);
        pthread_cond_destroy(&srv->fin_idle_cv);
    }
    pvg_srv_monitor_free(srv);
    pvg_srv_authcache_free(srv->authcache);
    pvg_assistant_free(srv->assistant);
    for (int i = 0; i < srv->n_stores; i++)
        pvg_store_free(srv->stores[i]);
    pvg_store_free(srv->audit_store);
    pvg_store_free(srv->reload_store);
    free(srv->stores);
    free(srv->free_idx);
    pvg_srv_metrics_free(&srv->metrics);
    pvg_srv_ts_free(&srv->ts);
    pvg_srv_ratelimit_free(&srv->rl);
    pvg_srv_body_pool_free(srv);
    pthread_mutex_destroy(&srv->pool_mu);
    pthread_cond_destroy(&srv->pool_cv);
    pthread_mutex_destroy(&srv->model_mu);
    pthread_mutex_destroy(&srv->reload_mu);
    pthread_mutex_destroy(&srv->stop_mu);
    pthread_mutex_destroy(&srv->rotate_mu);
    pthread_mutex_destroy(&srv->handed_mu);
    pthread_mutex_destroy(&srv->conns_mu);
    pthread_cond_destroy(&srv->stop_cv);
    free(srv->data_dir);
    free(srv->bind);
    free(srv->model_path);
    free(srv->dp_model_path);
    free(srv->web_dir);
    free(srv->dataset);
    free(srv->openapi_path);
    free(srv);
}

/* Creates, binds and listens on the server's socket. A port in use gives
 * PVG_ERR_BUSY naming the address and port. */
static pvg_status listen_socket(const struct sockaddr_in *sa, const char *bind_addr, int port,
                                int *fd_out, pvg_error *err)
{
    *fd_out = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return pvg_error_set(err, PVG_ERR_IO, "cannot create a socket for %s:%d: %s", bind_addr,
                             port, strerror(errno));
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)sa, sizeof *sa) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE)
            return pvg_error_set(err, PVG_ERR_BUSY,
                                 "cannot listen on %s:%d: the address is already in use (another "
                                 "server, perhaps another privguide serve, listens there); stop "
                                 "it or choose another --port",
                                 bind_addr, port);
        return pvg_error_set(err, e == EACCES ? PVG_ERR_PERMISSION : PVG_ERR_IO,
                             "cannot listen on %s:%d: %s", bind_addr, port, strerror(e));
    }
    if (listen(fd, 1024) != 0) {
        int e = errno;
        close(fd);
        return pvg_error_set(err, e == EADDRINUSE ? PVG_ERR_BUSY : PVG_ERR_IO,
                             "cannot listen on %s:%d: %s", bind_addr, port, strerror(e));
    }
    *fd_out = fd;
    return PVG_OK;
}

int pvg_server_default_threads(void)
{
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    return nc < 2 ? 2 : nc > 16 ? 16 : (int)nc;
}

pvg_status pvg_server_start(const pvg_server_options *opt, pvg_server **out, pvg_error *err)
{
    if (!opt || !out || !opt->data_dir)
        return pvg_error_set(err, PVG_ERR_INVALID, "server: data_dir is required");
    *out = NULL;
    if (opt->port < 0 || opt->port > 65535)
        return pvg_error_set(err, PVG_ERR_INVALID, "port: want 0..65535, got %d", opt->port);
    if (opt->threads < 0 || opt->threads > 256)
        return pvg_error_set(err, PVG_ERR_INVALID, "threads: want 1..256, got %d", opt->threads);
    if (opt->popular_epsilon < 0 || opt->popular_k < 0 || opt->popular_k > 1000)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "popular list: want epsilon > 0 and k in 1..1000");
    pvg_status st = pvg_init();
    if (st != PVG_OK) return pvg_error_set(err, st, "library initialisation failed");
    pvg_server *srv = calloc(1, sizeof *srv);
    if (!srv) return pvg_error_set(err, PVG_ERR_NOMEM, "server: out of memory");
    srv->opt = *opt;
    if (!srv->opt.threads) srv->opt.threads = pvg_server_default_threads();
    if (!srv->opt.max_body_bytes) srv->opt.max_body_bytes = 1 << 20;
    if (!srv->opt.max_json_depth) srv->opt.max_json_depth = 32;
    if (!srv->opt.timeout_seconds) srv->opt.timeout_seconds = 15;
    if (!srv->opt.reload_ms) srv->opt.reload_ms = 1000;
    if (!srv->opt.popular_epsilon) srv->opt.popular_epsilon = 1.0;
    if (!srv->opt.popular_k) srv->opt.popular_k = 20;
    if (!srv->opt.cache_entries) srv->opt.cache_entries = 65536;
    if (!srv->opt.auth_failure_rate) srv->opt.auth_failure_rate = 10;
    char mp[4096];
    srv->data_dir = strdup(opt->data_dir);
    srv->bind = dup_or(opt->bind, "127.0.0.1");
    srv->model_path =
        dup_or(opt->model_path, pvg_server_default_model_path(opt->data_dir, mp, sizeof mp));
    srv->dp_model_path =
        dup_or(opt->dp_model_path, pvg_server_default_dp_model_path(opt->data_dir, mp, sizeof mp));
    srv->web_dir = dup_or(opt->web_dir, NULL);
    srv->dataset = dup_or(opt->dataset, "default");
    if (opt->openapi_path)
        srv->openapi_path = strdup(opt->openapi_path);
    else if (opt->web_dir) {
        /* installed layout (share/privguide/{web,openapi.json}) first, then the source tree's */
        snprintf(mp, sizeof mp, "%s/../openapi.json", opt->web_dir);
        if (access(mp, R_OK) != 0)
            snprintf(mp, sizeof mp, "%s/../../../docs/openapi.json", opt->web_dir);
        srv->openapi_path = strdup(mp);
    }
    srv->opt.openapi_path = srv->openapi_path;
    srv->opt.data_dir = srv->data_dir;
    srv->opt.bind = srv->bind;
    srv->opt.model_path = srv->model_path;
    srv->opt.dp_model_path = srv->dp_model_path;
    srv->opt.web_dir = srv->web_dir;
    srv->opt.dataset = srv->dataset;
    pthread_mutex_init(&srv->pool_mu, NULL);
    pthread_cond_init(&srv->pool_cv, NULL);
    pvg_srv_body_pool_init(srv);
    pthread_mutex_init(&srv->model_mu, NULL);
    pthread_mutex_init(&srv->reload_mu, NULL);
    pthread_mutex_init(&srv->stop_mu, NULL);
    pthread_cond_init(&srv->stop_cv, NULL);
    pthread_mutex_init(&srv->rotate_mu, NULL);
    pthread_mutex_init(&srv->handed_mu, NULL);
    pthread_mutex_init(&srv->conns_mu, NULL);
    srv->started_at = (int64_t)time(NULL);
    if (!srv->data_dir || !srv->bind || !srv->model_path || !srv->dp_model_path || !srv->dataset ||
        (opt->web_dir && !srv->web_dir) ||
        pvg_srv_metrics_init(&srv->metrics, pvg_srv_routes_count() + 1) ||
        pvg_srv_ts_init(&srv->ts) || pvg_srv_ratelimit_init(&srv->rl) ||
        !(srv->authcache = pvg_srv_authcache_new(1.0))) {
        server_destroy(srv);
        return pvg_error_set(err, PVG_ERR_NOMEM, "server: out of memory");
    }
    pvg_assistant_options ao = {0};
    if (opt->assist_llm) ao.llm = *opt->assist_llm;
    pvg_status ast = pvg_assistant_new(&ao, &srv->assistant, err);
    if (ast != PVG_OK) {
        server_destroy(srv);
        return ast;
    }
    struct in_addr addr;
    if (inet_pton(AF_INET, srv->bind, &addr) != 1) {
        server_destroy(srv);
        return pvg_error_set(err, PVG_ERR_INVALID, "bind: want an IPv4 address, got \"%.64s\"",
                             opt->bind);
    }
    srv->n_stores = srv->opt.threads;
    srv->stores = calloc((size_t)srv->n_stores, sizeof *srv->stores);
    srv->free_idx = calloc((size_t)srv->n_stores, sizeof *srv->free_idx);
    if (!srv->stores || !srv->free_idx) {
        server_destroy(srv);
        return pvg_error_set(err, PVG_ERR_NOMEM, "server: out of memory");
    }
    for (int i = 0; i < srv->n_stores; i++) {
        st = pvg_store_open(srv->data_dir, &srv->stores[i], err);
        if (st != PVG_OK) {
            srv->n_stores = i;
            server_destroy(srv);
            return st;
        }
        srv->free_idx[srv->n_free++] = i;
        pvg_srv_store_prepare(srv->stores[i]);
    }
    st = pvg_store_open(srv->data_dir, &srv->audit_store, err);
    if (st == PVG_OK) st = pvg_store_open(srv->data_dir, &srv->reload_store, err);
    if (st != PVG_OK) {
        server_destroy(srv);
        return st;
    }
    pvg_srv_store_prepare(srv->reload_store);
    /* The audit writer's own connection commits in WAL mode without an fsync per
     * batch (relaxed durability): an entry is durable against a crash of this
     * process before its answer leaves, and reaches the disk at the next WAL
     * checkpoint; a power loss can lose the last batches. Its checkpoints
     * run beside its commits (audit_writer.c). */
    pvg_srv_audit_store_prepare(srv->audit_store);
    if (pvg_srv_audit_writer_start(&srv->audit, srv->audit_store, &srv->metrics)) {
        server_destroy(srv);
        return pvg_error_set(err, PVG_ERR_INTERNAL, "server: cannot start the audit writer");
    }
    /* deferred recommendations: finisher threads, started at each commit
     * group's end */
    if (fin_start(srv)) {
        server_destroy(srv);
        return pvg_error_set(err, PVG_ERR_INTERNAL, "server: cannot start the finisher threads");
    }
    pthread_mutex_lock(&srv->audit.mu);
    srv->audit.on_group_ctx = srv;
    srv->audit.on_group = fin_kick;
    pthread_mutex_unlock(&srv->audit.mu);
    if (!srv->opt.monitor_off) { /* access monitoring (alerts.c), fed after each commit */
        st = pvg_srv_monitor_start(srv, err);
        if (st != PVG_OK) {
            server_destroy(srv);
            return st;
        }
        pthread_mutex_lock(&srv->audit.mu);
        srv->audit.on_commit_ctx = srv->monitor;
        srv->audit.on_commit = pvg_srv_monitor_kick;
        pthread_mutex_unlock(&srv->audit.mu);
    }
    st = pvg_srv_model_init(srv, err);
    if (st == PVG_OK) st = pvg_srv_search_init(srv, err);
    if (st != PVG_OK) {
        server_destroy(srv);
        return st;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)srv->opt.port);
    sa.sin_addr = addr;
    /* Our own listening socket, with SO_REUSEADDR (a restart may bind while
     * old connections sit in TIME_WAIT) but never SO_REUSEPORT: a second
     * server on a port already in use must fail, not share the traffic. */
    int lfd;
    st = listen_socket(&sa, srv->bind, srv->opt.port, &lfd, err);
    if (st != PVG_OK) {
        server_destroy(srv);
        return st;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    srv->daemon = MHD_start_daemon(
        flags, (uint16_t)srv->opt.port, NULL, NULL, on_request, srv,
        /* the logger first: libmicrohttpd reports while it reads the options
           (a pool of 1 thread), and the library never prints */
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv, MHD_OPTION_LISTEN_SOCKET, lfd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)srv->opt.threads, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)srv->opt.timeout_seconds, MHD_OPTION_CONNECTION_LIMIT, 4096u,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, 1024u, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)16 * 1024, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
        MHD_OPTION_END);
    if (!srv->daemon) {
        int e = errno;
        if (fcntl(lfd, F_GETFD) != -1) close(lfd); /* unless libmicrohttpd closed it */
        server_destroy(srv);
        return pvg_error_set(err, PVG_ERR_IO, "cannot listen on %s:%d: %s",
                             opt->bind ? opt->bind : "127.0.0.1", opt->port,
                             e ? strerror(e) : "libmicrohttpd refused to start");
    }
    struct sockaddr_in bound;
    socklen_t bl = sizeof bound;
    srv->port = getsockname(lfd, (struct sockaddr *)&bound, &bl) == 0 ? ntohs(bound.sin_port)
                                                                      : srv->opt.port;
    *out = srv;
    return PVG_OK;
}

int pvg_server_port(const pvg_server *srv)
{
    return srv ? srv->port : 0;
}

/* Gives libmicrohttpd a connection (c, non-blocking), which queues it for a
 * worker and counts it only once the worker starts it (on_connection); until
 * then the drain counts it in the hand-over list, or the stop could see no connection,
 * close this one with its request unread and leave an empty reply. */
static void hand_over(pvg_server *srv, int c, const struct sockaddr *sa, socklen_t sl)
{
    unsigned long long ino = sock_ino(c);
    pthread_mutex_lock(&srv->handed_mu);
    int k = atomic_load(&srv->n_handed), tracked = k < PVG_SRV_HANDED_MAX;
    if (tracked) {
        srv->handed[k].fd = c;
        srv->handed[k].ino = ino;
        atomic_store(&srv->n_handed, k + 1);
    } /* else (the list full): counted only once a worker starts it */
    pthread_mutex_unlock(&srv->handed_mu);
    if (MHD_add_connection(srv->daemon, c, sa, sl) != MHD_YES && tracked)
        handed_drop(srv, c, ino); /* closed by libmicrohttpd: not waited for */
}

/* A worker that had taken a connection from the backlog just before the
 * quiesce may not have counted it yet (libmicrohttpd counts it once started).
 * Each worker takes the connections handed to it only after its current
 * accept: one loopback connection handed to every worker (libmicrohttpd
 * gives socket s to worker s mod pool size), once started, proves that every
 * such connection is counted. The client ends go to clients (closing them
 * lets the workers close theirs); returns how many, 0 when a socket call
 * fails (the drain then goes without this proof). */
static int worker_barrier(pvg_server *srv, int clients[256])
{
    int n = srv->opt.threads > 1 ? srv->opt.threads : 1, made = 0;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0) return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, n) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) != 0) {
        close(ls);
        return 0;
    }
    for (int r = 0; r < n; r++) {
        int cl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (cl < 0) break;
        if (connect(cl, (struct sockaddr *)&a, sizeof a) != 0) {
            close(cl);
            break;
        }
        struct sockaddr_in pa;
        socklen_t pl = sizeof pa;
        int sv = accept(ls, (struct sockaddr *)&pa, &pl);
        if (sv >= 0) {
            int f = fcntl(sv, F_GETFL, 0);
            if (f >= 0) (void)fcntl(sv, F_SETFL, f | O_NONBLOCK);
            (void)fcntl(sv, F_SETFD, FD_CLOEXEC);
        }
        /* a descriptor number that picks worker r: the lowest free one from
         * sv on with that remainder */
        for (int from = sv + 1; sv >= 0 && sv % n != r && from < sv + 64 * n + 64;) {
            int d = fcntl(sv, F_DUPFD_CLOEXEC, from);
            if (d < 0) break;
            if (d % n == r) {
                close(sv);
                sv = d;
            } else {
                close(d);
                from = d + 1;
            }
        }
        if (sv < 0 || sv % n != r) {
            if (sv >= 0) close(sv);
            close(cl);
            break;
        }
        clients[made++] = cl;
        hand_over(srv, sv, (struct sockaddr *)&pa, pl);
    }
    close(ls);
    return made;
}

pvg_status pvg_server_stop(pvg_server *srv, int drain_ms, pvg_error *err)
{
    if (!srv) return PVG_OK;
    if (srv->stopped) return PVG_OK;
    srv->stopped = 1;
    atomic_store(&srv->draining, 1);
    pvg_srv_stop_fl_waits(srv); /* parked long polls are answered now */
    if (srv->daemon) {
        /* Stop accepting, then wait until every open connection is done: requests
         * in flight are answered (with "Connection: close"), connections that
         * have not sent a request yet get the chance to. The drain's contract
         * is in docs/api.md (pvg_server_stop). */
        MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
        int held = -1; /* the listening socket's number, see below */
        if (fd != MHD_INVALID_SOCKET) {
            /* Connections already in the kernel's backlog would be reset by the
             * close: take them over first, then stop listening. First a filter
             * that drops every packet to the listening socket, so no handshake
             * completes between the sweep's last accept and the close (that
             * connection would be reset, its request sent); a client dialing
             * now has its SYN dropped, and its retry finds the port closed. */
            struct sock_filter drop_all[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
            struct sock_fprog prog = {1, drop_all};
            (void)setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
            int fl = fcntl(fd, F_GETFL, 0);
            if (fl >= 0) (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
            for (int i = 0; i < PVG_SRV_HANDED_MAX; i++) {
                struct sockaddr_storage ss;
                socklen_t sl = sizeof ss;
                int c = accept(fd, (struct sockaddr *)&ss, &sl);
                if (c < 0) {
                    if (errno == EINTR || errno == ECONNABORTED) continue;
                    break;
                }
                int cf = fcntl(c, F_GETFL, 0);
                if (cf >= 0) (void)fcntl(c, F_SETFL, cf | O_NONBLOCK);
                (void)fcntl(c, F_SETFD, FD_CLOEXEC);
                hand_over(srv, c, (struct sockaddr *)&ss, sl);
            }
            /* The listening socket's number stays taken until the workers
             * are stopped: a worker that found the daemon not quiesced just
             * before the quiesce still calls accept on that number, which
             * must not find another socket that got it meanwhile (the
             * barrier's listener below, another server's in this process):
             * an unbound socket takes its place (accept fails there) and the
             * listening socket is closed by the same dup2. */
            int inert = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (inert >= 0 && dup2(inert, fd) == fd) {
                (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
                held = fd;
            } else
                close(fd);
            if (inert >= 0) close(inert);
        }
        double until = pvg_srv_now() + (drain_ms > 0 ? drain_ms : 0) / 1000.0;
        int barrier[256]; /* one per worker: --threads is at most 256 */
        int n_barrier = worker_barrier(srv, barrier);
        close_idle(srv);
        while (atomic_load(&srv->n_handed) > 0 && pvg_srv_now() < until) {
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
            handed_prune(srv);
            close_idle(srv);
        }
        for (int i = 0; i < n_barrier; i++)
            close(barrier[i]); /* end of file: its worker closes it */
        for (;;) {
            const union MHD_DaemonInfo *di =
                MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
            unsigned open_conns = di ? di->num_connections : 0;
            if ((open_conns == 0 && atomic_load(&srv->inflight) == 0 &&
                 atomic_load(&srv->n_handed) == 0) ||
                pvg_srv_now() >= until)
                break;
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
            close_idle(srv);
        }
        /* no connection may stay suspended when the daemon stops: the
         * deferred answers are given first (the writer and the finishers
         * still run) */
        fin_close(srv);
        MHD_stop_daemon(srv->daemon);
        srv->daemon = NULL;
        if (held >= 0) close(held); /* the workers are stopped */
    }
    pvg_srv_model_shutdown(srv);
    pvg_srv_search_shutdown(srv);
    pvg_srv_audit_writer_stop(&srv->audit);
    fin_stop(srv);
    pvg_srv_monitor_stop(srv);
    (void)err;
    return PVG_OK;
}

void pvg_server_free(pvg_server *srv)
{
    if (!srv) return;
    /* a free has no one to report to: stop stops the workers and flushes
     * what it can on every path; callers that care call stop themselves */
    pvg_status st = pvg_server_stop(srv, 5000, NULL);
    (void)st;
    server_destroy(srv);
}
