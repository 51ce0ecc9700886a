/*
 * routes.c - the routes table of the HTTP API (declared once: method,
 * pattern, roles, handler) and the handlers of the /v1 JSON API, /healthz,
 * /metrics and /v1/openapi.json.
 */
#include "server/server_internal.h"
#include "store/text.h"

#include <privguide/ledger.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define K_MAX 100
#define EVENTS_MAX 1000

static void h_healthz(pvg_srv_req *r);
static void h_metrics(pvg_srv_req *r);
static void h_openapi(pvg_srv_req *r);
static void h_whoami(pvg_srv_req *r);
static void h_stats(pvg_srv_req *r);
static void h_events(pvg_srv_req *r);
static void h_recommend(pvg_srv_req *r);
static void h_similar(pvg_srv_req *r);
static void h_popular(pvg_srv_req *r);
static void h_export(pvg_srv_req *r);
static void h_delete(pvg_srv_req *r);
static void h_consent_get(pvg_srv_req *r);
static void h_consent_put(pvg_srv_req *r);
static void h_audit(pvg_srv_req *r);
static void h_timeseries(pvg_srv_req *r);
static void h_keys_list(pvg_srv_req *r);
static void h_credential_revoke(pvg_srv_req *r);
static void h_keys_rotate(pvg_srv_req *r);
static void h_page(pvg_srv_req *r);
static void h_static(pvg_srv_req *r);
void pvg_srv_h_fairness(pvg_srv_req *r); /* fairness_route.c */
void pvg_srv_recommend_why(pvg_srv_req *r, pvg_srv_model *m, pvg_srv_model *dm,
                           const pvg_srv_popular *pop, const char *user, int personalized,
                           json_t *answer); /* explain_route.c */
void pvg_srv_h_fl_join(pvg_srv_req *r);     /* fl_route.c */
void pvg_srv_h_fl_state(pvg_srv_req *r);
void pvg_srv_h_fl_broadcast(pvg_srv_req *r);
void pvg_srv_h_fl_message(pvg_srv_req *r);
void pvg_srv_h_fl_items(pvg_srv_req *r);

#define OPS (PVG_SRV_ADMIN | PVG_SRV_ANALYST)
#define ANYONE (PVG_SRV_ADMIN | PVG_SRV_ANALYST | PVG_SRV_USER)
#define OWN (PVG_SRV_ADMIN | PVG_SRV_USER | PVG_SRV_OWN)

static const pvg_srv_route ROUTES[] = {
    {"GET", "/healthz", PVG_SRV_PUBLIC, h_healthz, "liveness and model status"},
    {"GET", "/metrics", OPS, h_metrics, "Prometheus metrics"},
    {"GET", "/v1/openapi.json", PVG_SRV_PUBLIC, h_openapi, "this API as OpenAPI 3"},
    {"GET", "/v1/whoami", ANYONE, h_whoami, "the role of the presented credential"},
    {"GET", "/v1/stats", OPS, h_stats, "catalog size, budget, model; exact figures for admins"},
    {"POST", "/v1/events", PVG_SRV_ADMIN | PVG_SRV_USER, h_events, "record a batch of events"},
    {"GET", "/v1/users/{id}/recommendations", OWN, h_recommend, "recommendations for a user"},
    /* similar items: shoppers and analysts get the DP co-occurrence release,
     * the operator (admin key) the non-DP model */
    {"GET", "/v1/items/{id}/similar", ANYONE, h_similar, "items similar to an item"},
    {"GET", "/v1/items/popular", ANYONE, h_popular, "the DP popular list"},
    {"GET", "/v1/search", PVG_SRV_PUBLIC, pvg_srv_h_search, "search the catalog (public data)"},
    {"GET", "/v1/users/{id}/data", OWN, h_export, "export everything held about a user"},
    {"DELETE", "/v1/users/{id}", OWN, h_delete, "erase a user (crypto-shredding)"},
    {"GET", "/v1/users/{id}/consent", OWN, h_consent_get, "a user's consent"},
    {"PUT", "/v1/users/{id}/consent", OWN, h_consent_put, "change a user's consent"},
    {"PATCH", "/v1/users/{id}/consent", OWN, h_consent_put, "change a user's consent"},
    /* the shopping assistant: anonymous, or as the shopper (conversation kept sealed) */
    {"POST", "/v1/assist", PVG_SRV_PUBLIC, pvg_srv_h_assist, "ask the shopping assistant"},
    {"POST", "/v1/users/{id}/assist", OWN, pvg_srv_h_user_assist,
     "ask the shopping assistant as a shopper"},
    {"GET", "/v1/users/{id}/conversations", OWN, pvg_srv_h_conversations,
     "a user's assistant conversations"},
    /* the shopper's own view of the audit log: entries about them only */
    {"GET", "/v1/users/{id}/audit", PVG_SRV_USER | PVG_SRV_OWN, h_audit,
     "the audit entries about the token's own user"},
    /* federated training: a shopper's client and the round coordinator (fl_route.c) */
    {"POST", "/v1/fl/join", PVG_SRV_USER, pvg_srv_h_fl_join, "join federated training"},
    {"GET", "/v1/fl/state", PVG_SRV_USER, pvg_srv_h_fl_state, "the round's state for this client"},
    {"GET", "/v1/fl/broadcast", PVG_SRV_USER, pvg_srv_h_fl_broadcast, "the round's broadcast"},
    {"GET", "/v1/fl/items", PVG_SRV_USER, pvg_srv_h_fl_items,
     "the public item list of federated training"},
    {"POST", "/v1/fl/messages", PVG_SRV_USER, pvg_srv_h_fl_message,
     "a SecAgg message of the current phase"},
    {"GET", "/v1/admin/fairness", PVG_SRV_ADMIN, pvg_srv_h_fairness,
     "the last saved fairness audit report (aggregates)"},
    /* access monitoring (alerts.c, docs/monitor.md) */
    {"GET", "/v1/admin/alerts", PVG_SRV_ADMIN, pvg_srv_h_alerts, "access-monitoring alerts"},
    {"POST", "/v1/admin/alerts/{id}/ack", PVG_SRV_ADMIN, pvg_srv_h_alert_ack,
     "acknowledge an alert"},
    {"POST", "/v1/admin/credentials/{id}/suspend", PVG_SRV_ADMIN, pvg_srv_h_cred_suspend,
     "suspend a credential"},
    {"POST", "/v1/admin/credentials/{id}/resume", PVG_SRV_ADMIN, pvg_srv_h_cred_resume,
     "resume a suspended credential"},
    /* the dashboard's charts and the operator's actions */
    {"GET", "/v1/admin/timeseries", PVG_SRV_ADMIN, h_timeseries,
     "requests, errors, latency, ingest, budget and model builds over time"},
    {"GET", "/v1/admin/keys", PVG_SRV_ADMIN, h_keys_list, "the API keys (never their secrets)"},
    {"POST", "/v1/admin/credentials/{id}/revoke", PVG_SRV_ADMIN, h_credential_revoke,
     "revoke an API key or user token by its id"},
    {"POST", "/v1/admin/keys/rotate", PVG_SRV_ADMIN, h_keys_rotate,
     "rotate the master key (rewrap every data key)"},
    {"GET", "/", PVG_SRV_PUBLIC, h_page, "page index"},
    {"GET", "/shop", PVG_SRV_PUBLIC, h_page, "shop demo page"},
    {"GET", "/portal", PVG_SRV_PUBLIC, h_page, "privacy portal page"},
    {"GET", "/dashboard", PVG_SRV_PUBLIC, h_page, "operator dashboard page"},
    {"GET", "/static/{file}", PVG_SRV_PUBLIC, h_static, "page assets"},
    {0},
};

const pvg_srv_route *pvg_srv_routes(void)
{
    return ROUTES;
}

size_t pvg_srv_routes_count(void)
{
    return sizeof ROUTES / sizeof ROUTES[0] - 1;
}

/* Splits "/a/b/c" into segments; returns count or -1 (too many/too long). */
static int split_path(const char *p, char seg[8][256])
{
    int n = 0;
    if (*p != '/') return -1;
    if (strcmp(p, "/") == 0) return 0;
    while (*p == '/') {
        p++;
        size_t len = strcspn(p, "/");
        if (n == 8 || len >= 256) return -1;
        memcpy(seg[n], p, len);
        seg[n][len] = 0;
        n++;
        p += len;
    }
    return *p ? -1 : n;
}

int pvg_srv_route_match(const char *method, const char *path, char params[PVG_SRV_MAX_PARAMS][256])
{
    char ps[8][256], rs[8][256];
    int np = split_path(path, ps);
    if (np < 0) return -1;
    int path_matched = 0;
    for (size_t i = 0; i < pvg_srv_routes_count(); i++) {
        int nr = split_path(ROUTES[i].pattern, rs);
        if (nr != np) continue;
        int ok = 1, nparam = 0;
        for (int s = 0; s < nr && ok; s++) {
            if (rs[s][0] == '{') {
                if (!ps[s][0] || nparam == PVG_SRV_MAX_PARAMS)
                    ok = 0;
                else
                    memcpy(params[nparam++], ps[s], 256);
            } else if (strcmp(rs[s], ps[s]) != 0) {
                ok = 0;
            }
        }
        if (!ok) continue;
        if (strcmp(ROUTES[i].method, method) == 0) return (int)i;
        path_matched = 1;
    }
    return path_matched ? -2 : -1;
}

/* ---- helpers ---- */

static int query_k(pvg_srv_req *r, size_t *k)
{
    const char *v = pvg_srv_req_query(r, "k");
    *k = 10;
    if (!v) return 0;
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < 1 || x > K_MAX) {
        pvg_srv_reply_error(r, 400, "invalid",
                            "query parameter k: want an integer 1..%d, got \"%.40s\"", K_MAX, v);
        return -1;
    }
    *k = (size_t)x;
    return 0;
}

static json_t *item_json(const pvg_srv_model *m, int64_t idx, double score)
{
    const char *id = pvg_model_item_id(m->model, idx);
    json_t *o = json_object();
    json_object_set_new(o, "item", json_string(id ? id : ""));
    const pvg_srv_catalog_entry *c = &m->catalog[idx];
    json_object_set_new(o, "title", c->title ? json_string(c->title) : json_null());
    json_object_set_new(o, "price", c->price >= 0 ? json_real(c->price) : json_null());
    json_object_set_new(o, "last_price",
                        c->last_price >= 0 ? json_real(c->last_price) : json_null());
    json_object_set_new(o, "score", json_real(isfinite(score) ? score : 0.0));
    return o;
}

static pvg_srv_model *need_model(pvg_srv_req *r)
{
    pvg_srv_model *m = pvg_srv_model_acquire(r->srv);
    if (!m)
        pvg_srv_reply_error(r, 503, "no_model",
                            "no model in service yet: train one (privguide train) to %s",
                            r->srv->model_path);
    return m;
}

/* The DP-trained model as shown to anyone: its type, build and what its
 * header records of its training (epsilon, delta, mechanism, bound). */
static json_t *dp_model_json(const pvg_srv_model *dm)
{
    pvg_srv_dp_info d;
    (void)pvg_srv_model_dp_info(dm, &d); /* only DP models are loaded there */
    return json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:s, s:f, s:i}", "type",
                     pvg_model_type_name(pvg_model_type_of(dm->model)), "generation",
                     (json_int_t)dm->generation, "loaded_at", (json_int_t)dm->loaded_at, "built_at",
                     (json_int_t)(dm->mtime_ns / 1000000000), "epsilon", d.epsilon, "delta",
                     d.delta, "mechanism", d.mechanism, "noise_multiplier", d.noise_multiplier,
                     "max_items_per_user", d.max_items);
}

/* 1 when the DP model keeps item similarities (popularity keeps none). */
static int dp_model_has_similar(const pvg_srv_model *dm)
{
    return dm && pvg_model_type_of(dm->model) != PVG_MODEL_POPULARITY;
}

/* ---- handlers ---- */

static void h_healthz(pvg_srv_req *r)
{
    pvg_srv_model *m = pvg_srv_model_acquire(r->srv);
    json_t *o = json_pack("{s:s, s:b, s:I}", "status", "ok", "model", m != NULL, "generation",
                          (json_int_t)(m ? m->generation : 0));
    pvg_srv_model_release(m);
    pvg_srv_reply_json(r, 200, o);
}

static void h_metrics(pvg_srv_req *r)
{
    char *text =
        pvg_srv_metrics_render(r->srv, pvg_srv_req_store(r), r->who.role == PVG_ROLE_ADMIN);
    if (!text) {
        pvg_srv_reply_error(r, 500, "internal", "cannot render metrics");
        return;
    }
    free(r->out);
    r->out = text;
    r->out_len = strlen(text);
    r->status = 200;
    r->ctype = "text/plain; version=0.0.4; charset=utf-8";
}

static char *read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    fclose(f);
    if (!buf || n > max) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static void h_openapi(pvg_srv_req *r)
{
    size_t len = 0;
    char *t = r->srv->openapi_path ? read_file(r->srv->openapi_path, 1 << 20, &len) : NULL;
    if (!t) {
        pvg_srv_reply_error(r, 404, "not_found", "the OpenAPI document is not installed (%s)",
                            r->srv->openapi_path ? r->srv->openapi_path : "no path configured");
        return;
    }
    free(r->out);
    r->out = t;
    r->out_len = len;
    r->status = 200;
    r->ctype = "application/json";
}

static void h_whoami(pvg_srv_req *r)
{
    pvg_srv_reply_json(r, 200,
                       json_pack("{s:s, s:s, s:f, s:I}", "role", pvg_role_name(r->who.role),
                                 "key_id", r->who.key_id, "rate_per_s", r->who.rate_per_s,
                                 "expires_at", (json_int_t)r->who.expires_at));
}

/* The store's budget state (not personal: what the operator chose to
 * release), as JSON. */
static json_t *budget_json(pvg_store *s)
{
    pvg_ledger_state st;
    if (pvg_ledger_state_get(s, &st, NULL) != PVG_OK) return json_null();
    json_t *purposes = json_array();
    for (int p = 0; p < PVG_LEDGER_N_PURPOSES; p++) {
        const pvg_ledger_account *a = &st.purposes[p];
        json_t *cap =
            a->has_cap ? json_pack("{s:f, s:f}", "epsilon", a->cap_epsilon, "delta", a->cap_delta)
                       : json_null();
        json_array_append_new(
            purposes, json_pack("{s:s, s:o, s:f, s:f, s:I}", "purpose", pvg_ledger_purpose_name(p),
                                "cap", cap, "spent_epsilon", a->spent_epsilon, "spent_delta",
                                a->spent_delta, "releases", (json_int_t)a->releases));
    }
    json_t *total =
        st.has_total ? json_pack("{s:f, s:f}", "epsilon", st.total_epsilon, "delta", st.total_delta)
                     : json_null();
    json_t *left =
        st.has_total
            ? json_pack(
                  "{s:f, s:f}", "epsilon",
                  st.total_epsilon > st.spent_epsilon ? st.total_epsilon - st.spent_epsilon : 0.0,
                  "delta", st.total_delta > st.spent_delta ? st.total_delta - st.spent_delta : 0.0)
            : json_null();
    return json_pack("{s:o, s:{s:f, s:f}, s:o, s:I, s:o}", "total", total, "spent", "epsilon",
                     st.spent_epsilon, "delta", st.spent_delta, "remaining", left, "releases",
                     (json_int_t)st.releases, "purposes", purposes);
}

/* Analysts (and admins) get only DP releases and non-personal facts: the
 * catalog's size (operator data, not event stubs), uptime, the model's type,
 * generation and build time, the DP popular release, the budget. The exact
 * figures (store volume, the model's users and items, the evaluation, the
 * request counters) move when one shopper acts: admin only, under "exact". */
static void h_stats(pvg_srv_req *r)
{
    pvg_store *s = pvg_srv_req_store(r);
    int admin = r->who.role == PVG_ROLE_ADMIN;
    json_t *o = json_object();
    long long catalog = pvg_srv_catalog_items(s);
    if (catalog < 0) {
        json_decref(o);
        pvg_srv_reply_error(r, 500, "internal", "cannot read the catalog");
        return;
    }
    json_object_set_new(o, "catalog", json_pack("{s:I}", "items", (json_int_t)catalog));
    json_object_set_new(o, "budget", budget_json(s));
    json_t *exact = admin ? json_object() : NULL;
    pvg_srv_model *m = pvg_srv_model_acquire(r->srv);
    if (m) {
        json_t *mj = json_pack("{s:s, s:I, s:I, s:I}", "type",
                               pvg_model_type_name(pvg_model_type_of(m->model)), "generation",
                               (json_int_t)m->generation, "loaded_at", (json_int_t)m->loaded_at,
                               "built_at", (json_int_t)(m->mtime_ns / 1000000000));
        pvg_srv_popular *pop = atomic_load(&m->popular);
        if (pop) {
            json_object_set_new(mj, "popular_release",
                                json_pack("{s:I, s:f, s:s, s:I}", "items", (json_int_t)pop->n,
                                          "epsilon", pop->epsilon, "mechanism", pop->mechanism,
                                          "release_id", (json_int_t)pop->release_id));
        } else {
            char why[PVG_ERROR_TEXT_LEN + 8];
            pvg_srv_model_popular_error(m, why, sizeof why);
            json_object_set_new(mj, "popular_error", json_string(why));
        }
        json_object_set_new(o, "model", mj);
        if (exact)
            json_object_set_new(exact, "model",
                                json_pack("{s:I, s:I, s:s}", "items",
                                          (json_int_t)pvg_model_n_items(m->model), "users",
                                          (json_int_t)pvg_model_n_users(m->model), "path",
                                          r->srv->model_path));
    } else {
        json_object_set_new(o, "model", json_null());
    }
    /* which model serves what, with its (epsilon, delta) */
    pvg_srv_model *dm = pvg_srv_dp_model_acquire(r->srv);
    json_t *serving = json_object();
    json_t *dpj = dm ? dp_model_json(dm) : json_null();
    pthread_mutex_lock(&r->srv->model_mu);
    if (r->srv->last_dp_reload_error[0])
        json_object_set_new(o, "dp_model_error", json_string(r->srv->last_dp_reload_error));
    pthread_mutex_unlock(&r->srv->model_mu);
    json_object_set_new(o, "dp_model", dpj);
    json_object_set_new(
        serving, "own_list",
        m ? json_pack("{s:s, s:s, s:b, s:s}", "source", "model", "type",
                      pvg_model_type_name(pvg_model_type_of(m->model)), "dp", 0, "requires",
                      "the shopper's own token (or the operator) and personalization consent")
          : json_null());
    pvg_srv_popular *pop = m ? atomic_load(&m->popular) : NULL;
    const pvg_srv_similar *sim = m ? atomic_load(&m->similar) : NULL;
    json_t *pop_src = NULL;
    if (dm && dm->n_dp_popular) {
        pop_src = json_pack("{s:s, s:O, s:O, s:O}", "source", "dp_model", "epsilon",
                            json_object_get(dpj, "epsilon"), "delta", json_object_get(dpj, "delta"),
                            "mechanism", json_object_get(dpj, "mechanism"));
    } else if (pop) {
        pop_src = json_pack("{s:s, s:f, s:f, s:s, s:I, s:b}", "source", "dp_release", "epsilon",
                            pop->epsilon, "delta", pop->delta, "mechanism", pop->mechanism,
                            "release_id", (json_int_t)pop->release_id, "stale", pop->stale);
    }
    json_object_set_new(serving, "popular", pop_src ? pop_src : json_null());
    json_object_set_new(serving, "non_personal_list",
                        pop_src ? json_deep_copy(pop_src) : json_null());
    json_t *sim_src = NULL;
    if (dp_model_has_similar(dm)) {
        sim_src = json_pack("{s:s, s:O, s:O, s:O}", "source", "dp_model", "epsilon",
                            json_object_get(dpj, "epsilon"), "delta", json_object_get(dpj, "delta"),
                            "mechanism", json_object_get(dpj, "mechanism"));
    } else if (sim) {
        sim_src = json_pack("{s:s, s:f, s:f, s:s, s:I, s:b}", "source", "dp_release", "epsilon",
                            sim->rel->info.epsilon, "delta", sim->rel->info.delta, "mechanism",
                            sim->rel->info.mechanism, "release_id", (json_int_t)sim->release_id,
                            "stale", sim->stale);
    }
    json_object_set_new(serving, "similar", sim_src ? sim_src : json_null());
    json_object_set_new(serving, "similar_for_operator",
                        m ? json_pack("{s:s, s:b}", "source", "model", "dp", 0) : json_null());
    json_object_set_new(o, "serving", serving);
    if (exact && dm)
        json_object_set_new(exact, "dp_model",
                            json_pack("{s:I, s:s}", "items",
                                      (json_int_t)pvg_model_n_items(dm->model), "path",
                                      r->srv->dp_model_path));
    pvg_srv_model_release(dm);
    pvg_srv_model_release(m);
    json_object_set_new(o, "uptime_seconds",
                        json_integer((json_int_t)(time(NULL) - r->srv->started_at)));
    json_object_set_new(o, "now", json_integer((json_int_t)time(NULL)));
    if (!exact) {
        pvg_srv_reply_json(r, 200, o);
        return;
    }
    pvg_store_counts c;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_store_counts_get(s, &c, &e);
    if (st != PVG_OK) {
        json_decref(exact);
        json_decref(o);
        pvg_srv_reply_status(r, "store counts", st, &e);
        return;
    }
    json_object_set_new(exact, "store",
                        json_pack("{s:I, s:I, s:I, s:I}", "users", (json_int_t)c.users, "items",
                                  (json_int_t)c.items, "events", (json_int_t)c.events,
                                  "anonymous_rows", (json_int_t)c.anonymous_rows));
    /* the last evaluation, as written by `privguide eval ... --json > <data_dir>/evaluation.json`
     */
    char path[4096];
    snprintf(path, sizeof path, "%s/evaluation.json", r->srv->data_dir);
    json_t *ev = json_load_file(path, 0, NULL);
    json_object_set_new(exact, "evaluation", ev ? ev : json_null());
    pvg_srv_metrics *mt = &r->srv->metrics;
    long long by[6] = {0};
    for (size_t i = 0; i < mt->n_routes; i++)
        for (int k = 0; k < 6; k++)
            by[k] += atomic_load(&mt->routes[i].by_class[k]);
    json_object_set_new(exact, "requests",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "total",
                                  (json_int_t)(by[1] + by[2] + by[3] + by[4] + by[5]), "ok",
                                  (json_int_t)by[2], "client_errors", (json_int_t)by[4],
                                  "server_errors", (json_int_t)by[5], "personalized",
                                  (json_int_t)atomic_load(&mt->recs_personal), "popular",
                                  (json_int_t)atomic_load(&mt->recs_popular), "rate_limited",
                                  (json_int_t)atomic_load(&mt->rate_limited)));
    json_object_set_new(o, "exact", exact);
    pvg_srv_reply_json(r, 200, o);
}

/* ---- events ---- */

static void add_err(json_t *errs, size_t i, const char *reason, const char *field, const char *fmt,
                    ...) PVG_PRINTF(5, 6);
static void add_err(json_t *errs, size_t i, const char *reason, const char *field, const char *fmt,
                    ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_array_append_new(errs, json_pack("{s:I, s:s, s:s?, s:s}", "index", (json_int_t)i, "reason",
                                          reason, "field", field, "message", msg));
}

/* Each event is parsed by pvg_event_from_json (store/text.h), the same code
 * as the JSONL reader, so an object gets the same reason code on both
 * paths; here "user" is required and "ts" defaults to now. */
static void h_events(pvg_srv_req *r)
{
    json_t *doc = pvg_srv_req_json(r);
    if (!doc) return;
    json_t *arr = json_is_array(doc) ? doc : json_object_get(doc, "events");
    if (!json_is_array(arr)) {
        json_decref(doc);
        pvg_srv_reply_error(r, 400, "invalid",
                            "request body: want {\"events\": [...]} or an array of events");
        return;
    }
    size_t n = json_array_size(arr);
    if (n > EVENTS_MAX) {
        json_decref(doc);
        pvg_srv_reply_error(r, 413, "too_many",
                            "request body: at most %d events per batch, got %zu", EVENTS_MAX, n);
        return;
    }
    if (n == 0) { /* nothing accepted: 422, as for a batch whose every event is refused */
        json_decref(doc);
        pvg_srv_reply_error(r, 422, "rejected", "request body: the batch holds no event");
        return;
    }
    pvg_store *s = pvg_srv_req_store(r);
    json_t *errs = json_array();
    long long stored = 0, dup = 0, rejected = 0;
    const pvg_event_json_rules rules = {.anonymous_ok = 0, .default_ts = pvg_store_now(s)};
    pvg_event_json *pe = calloc(n, sizeof *pe);
    pvg_event_in *in = calloc(n, sizeof *in);
    pvg_event_out *out = calloc(n, sizeof *out);
    if (!pe || !in || !out) {
        free(pe);
        free(in);
        free(out);
        json_decref(doc);
        json_decref(errs);
        pvg_srv_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    /* Parse and authorise every event, then hand the batch to the store,
     * which prepares it outside its write lock and commits it at once. */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        pvg_event_json_fault fault;
        if (pvg_event_from_json(json_array_get(arr, i), &rules, &pe[i], &fault) != PVG_OK) {
            add_err(errs, i, fault.reason, fault.field, "events[%zu]: %s", i, fault.detail);
            rejected++;
            continue;
        }
        if (r->who.role == PVG_ROLE_USER && !pvg_auth_may_access_user(s, &r->who, pe[i].user)) {
            add_err(errs, i, "forbidden_user", "user",
                    "events[%zu].user: this token may record only its own events", i);
            rejected++;
            continue;
        }
        in[m++] = (pvg_event_in){pe[i].user, &pe[i].event, pe[i].dedup, (long)i};
    }
    pvg_error e;
    pvg_error_clear(&e);
    pvg_access g;
    pvg_srv_access_init(r, &g);
    pvg_status st = m ? pvg_access_events_record(&g, in, m, out, &stored, &dup, &e) : PVG_OK;
    for (size_t k = 0; st == PVG_OK && k < m; k++)
        if (out[k].status != PVG_OK) {
            add_err(errs, (size_t)in[k].index, out[k].reason, NULL, "events[%ld]: %s", in[k].index,
                    out[k].message);
            rejected++;
        }
    free(pe);
    free(in);
    free(out);
    json_decref(doc);
    if (st != PVG_OK) {
        json_decref(errs);
        if (st == PVG_ERR_INVALID) /* the per-user limit: err names the first event over it */
            pvg_srv_reply_error(r, 413, "too_many_for_user", "%s", e.text);
        else
            pvg_srv_reply_status(r, "events", st, &e);
        return;
    }
    atomic_fetch_add(&r->srv->metrics.events_accepted, stored + dup);
    pvg_srv_ts_events(&r->srv->ts, stored + dup);
    atomic_fetch_add(&r->srv->metrics.events_rejected, rejected);
    if ((stored + dup) == 0 && rejected > 0) {
        json_t *o = json_pack("{s:s, s:s, s:i, s:I, s:I, s:o}", "error", "rejected", "message",
                              "every event was refused; see errors", "status", 422, "accepted",
                              (json_int_t)0, "rejected", (json_int_t)rejected, "errors", errs);
        pvg_srv_reply_json(r, 422, o);
        return;
    }
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:o}", "accepted", (json_int_t)(stored + dup),
                          "stored", (json_int_t)stored, "duplicates", (json_int_t)dup, "rejected",
                          (json_int_t)rejected, "errors", errs);
    pvg_srv_reply_json(r, 200, o);
}

/* ---- recommendations and items ---- */

static json_t *release_json(pvg_srv_req *r, const char *mechanism, double eps, double delta,
                            int64_t release_id, int64_t released_at, int stale)
{
    int64_t age = (int64_t)time(NULL) - released_at;
    return json_pack("{s:s, s:f, s:f, s:s, s:I, s:I, s:I, s:b}", "dataset", r->srv->dataset,
                     "epsilon", eps, "delta", delta, "mechanism", mechanism, "release_id",
                     (json_int_t)release_id, "released_at", (json_int_t)released_at, "age_s",
                     (json_int_t)(age > 0 ? age : 0), "stale", stale);
}

static json_t *popular_item_json(const pvg_srv_popular_item *it, double score)
{
    json_t *o = json_object();
    json_object_set_new(o, "item", json_string(it->ext_id));
    json_object_set_new(o, "title", it->title ? json_string(it->title) : json_null());
    json_object_set_new(o, "price", it->price >= 0 ? json_real(it->price) : json_null());
    json_object_set_new(o, "score", json_real(isfinite(score) ? score : 0.0));
    return o;
}

/* The DP popular list (catalog items only), with its release and age: a
 * stale list is the last earlier release, served because this model
 * build's could not be made (e.g. no budget left). */
static void popular_answer(pvg_srv_req *r, const pvg_srv_popular *p, size_t k, json_t *o)
{
    json_t *items = json_array();
    size_t n = p->n < k ? p->n : k;
    for (size_t i = 0; i < n; i++) {
        json_t *it = popular_item_json(&p->items[i], (double)(p->n - i) / (double)p->n);
        json_object_set_new(it, "noisy_count",
                            p->items[i].noisy_count >= 0 ? json_integer(p->items[i].noisy_count)
                                                         : json_null());
        json_array_append_new(items, it);
    }
    json_object_set_new(o, "items", items);
    json_t *rel = release_json(r, p->mechanism, p->epsilon, p->delta, p->release_id, p->released_at,
                               p->stale);
    json_object_set_new(o, "released_at", json_incref(json_object_get(rel, "released_at")));
    json_object_set_new(o, "age_s", json_incref(json_object_get(rel, "age_s")));
    json_object_set_new(o, "release", rel);
}

/* The model's popular list (fresh or the last earlier release), or NULL
 * with a 503 saying plainly that no public list exists yet, and why. */
static const pvg_srv_popular *need_popular(pvg_srv_req *r, pvg_srv_model *m)
{
    const pvg_srv_popular *p = atomic_load(&m->popular);
    if (!p) {
        char why[PVG_ERROR_TEXT_LEN + 8];
        pvg_srv_model_popular_error(m, why, sizeof why);
        pvg_srv_reply_error(r, 503, "no_popular_list",
                            "no public popular list exists yet (none was ever released): %s", why);
    }
    return p;
}

/* The DP model's popular list (catalog items only), with the model's DP
 * record. */
static void dp_popular_answer(pvg_srv_req *r, const pvg_srv_model *dm, size_t k, json_t *o)
{
    (void)r;
    json_t *items = json_array();
    size_t n = dm->n_dp_popular < k ? dm->n_dp_popular : k;
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, item_json(dm, dm->dp_popular[i], dm->dp_popular_score[i]));
    json_object_set_new(o, "items", items);
    json_object_set_new(o, "source", json_string("dp_model"));
    json_object_set_new(o, "model", dp_model_json(dm));
}

/* The model holder's recommendation cache as the gate's memo (asked only
 * after the gate's consent check and audit entry). */
typedef struct memo_ctx {
    pvg_srv_req *r;
    pvg_srv_model *m;
} memo_ctx;

static int memo_get(void *ctx, const unsigned char key[16], size_t k, pvg_scored_item *out,
                    size_t *n)
{
    memo_ctx *mc = ctx;
    if (!pvg_srv_cache_get(mc->m->cache, key, k, out, n)) return 0;
    atomic_fetch_add(&mc->r->srv->metrics.cache_hits, 1);
    return 1;
}

static void memo_put(void *ctx, const unsigned char key[16], size_t k, const pvg_scored_item *in,
                     size_t n)
{
    memo_ctx *mc = ctx;
    pvg_srv_cache_put(mc->m->cache, key, k, in, n);
}

/* A recommendation between its gate checks and its answer: what the
 * request holds while its audit entry commits (the models stay acquired,
 * so a model swap meanwhile frees nothing it uses). */
struct pvg_srv_rec_async {
    pvg_srv_model *m, *dm;
    const pvg_srv_popular *pop;
    size_t k;
    int explain;
    int64_t dp_fallback[K_MAX];
    memo_ctx mc;
    pvg_access_rec_request rq;
    pvg_scored_item out[K_MAX];
};

/* The answer of a gated recommendation (st, ans, out from the gate);
 * releases a->m and a->dm. */
static void recommend_reply(pvg_srv_req *r, pvg_srv_rec_async *a, pvg_status st,
                            const pvg_access_rec_answer *ansp, const pvg_error *e)
{
    pvg_srv_model *m = a->m, *dm = a->dm;
    const pvg_srv_popular *pop = a->pop;
    const char *user = r->params[0];
    size_t k = a->k;
    int explain = a->explain;
    const pvg_scored_item *out = a->out;
    a->m = a->dm = NULL;
    if (st != PVG_OK) {
        pvg_srv_model_release(dm);
        pvg_srv_model_release(m);
        pvg_srv_reply_access(r, "recommend", st, e);
        return;
    }
    pvg_access_rec_answer ans = *ansp;
    if (ans.personalized && !explain) {
        char *body = NULL;
        size_t body_len = 0;
        if (pvg_srv_cache_get_body(m->cache, ans.user_key, k, &body, &body_len)) {
            /* the same answer as last time for this user, model and k */
            atomic_fetch_add(&r->srv->metrics.recs_personal, 1);
            pvg_srv_model_release(dm);
            pvg_srv_model_release(m);
            free(r->out);
            r->out = body;
            r->out_len = body_len;
            r->status = 200;
            r->ctype = "application/json";
            return;
        }
    } else if (!pop && !dm) {
        (void)need_popular(r, m);
        pvg_srv_model_release(m);
        return;
    }
    if (ans.personalized && !explain) {
        /* the answer written directly (recs_json.c), the same bytes */
        size_t len = 0;
        char *body = pvg_srv_recs_json(m, user, out, ans.n, &len);
        if (body) {
            atomic_fetch_add(&r->srv->metrics.recs_personal, 1);
            free(r->out);
            r->out = body;
            r->out_len = len;
            r->status = 200;
            r->ctype = "application/json";
            pvg_srv_cache_put_body(m->cache, ans.user_key, k, r->out, r->out_len);
            pvg_srv_model_release(dm);
            pvg_srv_model_release(m);
            return;
        }
    }
    json_t *o = json_object();
    json_object_set_new(o, "user", json_string(user));
    if (ans.personalized) {
        json_object_set_new(o, "personalized", json_true());
        json_object_set_new(o, "source", json_string("model")); /* the shopper's own data */
        json_t *items = json_array();
        for (size_t i = 0; i < ans.n; i++)
            json_array_append_new(items, item_json(m, out[i].item_index, out[i].score));
        json_object_set_new(o, "items", items);
        atomic_fetch_add(&r->srv->metrics.recs_personal, 1);
    } else {
        json_object_set_new(o, "personalized", json_false());
        json_object_set_new(o, "reason", json_string(ans.reason));
        if (dm) {
            dp_popular_answer(r, dm, k, o);
        } else {
            popular_answer(r, pop, k, o);
            json_object_set_new(o, "source", json_string("dp_release"));
        }
        atomic_fetch_add(&r->srv->metrics.recs_popular, 1);
    }
    json_object_set_new(o, "model_generation", json_integer(m->generation));
    if (explain) pvg_srv_recommend_why(r, m, dm, pop, user, ans.personalized, o);
    pvg_srv_reply_json(r, 200, o);
    if (ans.personalized && !explain && r->status == 200)
        pvg_srv_cache_put_body(m->cache, ans.user_key, k, r->out, r->out_len);
    pvg_srv_model_release(dm);
    pvg_srv_model_release(m);
}

void pvg_srv_recommend_finish(pvg_srv_req *const *rs, size_t n)
{
    pvg_access_rec_pending *p[PVG_SRV_FINISH_MAX] = {0};
    pvg_scored_item *outs[PVG_SRV_FINISH_MAX] = {0};
    pvg_access_rec_answer ans[PVG_SRV_FINISH_MAX];
    pvg_status st[PVG_SRV_FINISH_MAX];
    pvg_error errs[PVG_SRV_FINISH_MAX];
    for (size_t i = 0; i < n; i++) {
        p[i] = rs[i]->pend;
        outs[i] = rs[i]->rec->out;
        rs[i]->pend = NULL;
    }
    /* the gate computes only for entries committed: every shopper of the
     * group allowed and committed is scored in one batch */
    pvg_access_recommend_finish(p, n, outs, ans, st, errs);
    for (size_t i = 0; i < n; i++) {
        recommend_reply(rs[i], rs[i]->rec, st[i], &ans[i], &errs[i]);
        free(rs[i]->rec);
        rs[i]->rec = NULL;
    }
}

static void h_recommend(pvg_srv_req *r)
{
    size_t k;
    if (query_k(r, &k)) return;
    /* ?explain=1: a `why` per item (explain_route.c; never from the body cache) */
    const char *xp = pvg_srv_req_query(r, "explain");
    if (xp && strcmp(xp, "0") != 0 && strcmp(xp, "1") != 0) {
        pvg_srv_reply_error(r, 400, "invalid",
                            "query parameter explain: want 0 or 1, got \"%.40s\"", xp);
        return;
    }
    int explain = xp && strcmp(xp, "1") == 0;
    pvg_srv_rec_async *a = calloc(1, sizeof *a);
    if (!a) {
        pvg_srv_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    pvg_srv_model *m = need_model(r);
    if (!m) {
        free(a);
        return;
    }
    const char *user = r->params[0];
    /* the non-personalised answer is the DP popular list only: with none
     * released yet the gate gets an empty list and we answer 503 below */
    static const int64_t no_items[1] = {0};
    const pvg_srv_popular *pop = atomic_load(&m->popular);
    /* with a DP-trained model in service, the non-personalised list is its
     * popular list (mapped onto this model's items for the gate) */
    pvg_srv_model *dm = pvg_srv_dp_model_acquire(r->srv);
    if (dm && !dm->n_dp_popular) {
        pvg_srv_model_release(dm);
        dm = NULL;
    }
    size_t n_dp_fallback = 0;
    for (size_t i = 0; dm && i < dm->n_dp_popular && n_dp_fallback < k; i++) {
        int64_t ix =
            pvg_model_item_index(m->model, pvg_model_item_id(dm->model, dm->dp_popular[i]));
        if (ix >= 0) a->dp_fallback[n_dp_fallback++] = ix;
    }
    a->m = m;
    a->dm = dm;
    a->pop = pop;
    a->k = k;
    a->explain = explain;
    a->mc = (memo_ctx){r, m};
    pvg_access_rec_request *rq = &a->rq;
    rq->model = m->model;
    rq->ext_user = user;
    rq->k = k;
    if (dm) {
        rq->fallback_items = n_dp_fallback ? a->dp_fallback : no_items;
        rq->n_fallback = n_dp_fallback;
    } else {
        rq->fallback_items = pop && pop->n_fallback ? pop->item_index : no_items;
        rq->n_fallback = pop ? pop->n_fallback : 0;
    }
    rq->memo_get = memo_get;
    rq->memo_put = memo_put;
    rq->memo_ctx = &a->mc;
    pvg_access g;
    pvg_srv_access_init(r, &g);
    pvg_access_rec_answer ans;
    memset(&ans, 0, sizeof ans);
    pvg_error e;
    pvg_error_clear(&e);
    /* the deferred gate: the connection waits suspended (no thread blocked)
     * while the audit entry commits; the committed group is then answered
     * and scored as one batch by pvg_srv_recommend_finish. ?explain=1 and a
     * server that is stopping take the synchronous gate. */
    if (!explain && pvg_srv_req_suspend(r) == 0) {
        r->rec = a;
        pvg_access_rec_pending *pend = NULL;
        pvg_status st = pvg_access_recommend_begin(&g, rq, pvg_srv_access_enqueue, r, &pend, &e);
        if (st == PVG_OK) return; /* r belongs to the writer and the finisher now */
        /* nothing was queued: answered here, the connection resumed at once */
        r->rec = NULL;
        r->pend = NULL;
        recommend_reply(r, a, st, &ans, &e);
        free(a);
        pvg_srv_req_resume_now(r);
        return;
    }
    pvg_status st = pvg_access_recommend(&g, rq, a->out, &ans, &e);
    recommend_reply(r, a, st, &ans, &e);
    free(a);
}

/* Similar items for shoppers and analysts: from the DP co-occurrence
 * release over the popular list's items (the non-DP model would show other
 * shoppers' baskets: an item with one buyer has that buyer's other items
 * as its neighbours). */
static void similar_released(pvg_srv_req *r, pvg_srv_model *m, size_t k)
{
    const pvg_srv_similar *x = atomic_load(&m->similar);
    if (!x) {
        char why[PVG_ERROR_TEXT_LEN + 8];
        pvg_srv_model_similar_error(m, why, sizeof why);
        pvg_srv_reply_error(r, 503, "no_similar_release",
                            "no public (DP) similar items exist yet: %s", why);
        return;
    }
    int64_t row = 0;
    for (size_t i = 0; i < x->n; i++)
        if (strcmp(x->items[i].ext_id, r->params[0]) == 0) row = x->items[i].row_id;
    pvg_access g;
    pvg_srv_access_init(r, &g);
    const pvg_dp_similar *sim = NULL;
    size_t n = 0;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_access_similar_released(
        &g, x->rel, x->release_id, r->params[0], row,
        r->who.role == PVG_ROLE_USER ? r->who.pseudonym : NULL, &sim, &n, &e);
    if (st == PVG_ERR_NOT_FOUND && !r->gate_audit_failed) {
        st = PVG_OK; /* outside the public domain: no public neighbours */
        n = 0;
    }
    if (st != PVG_OK) {
        pvg_srv_reply_access(r, "similar", st, &e);
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < n && json_array_size(items) < k; i++) {
        const pvg_srv_popular_item *it = pvg_srv_similar_item(x, sim[i].item);
        if (it) json_array_append_new(items, popular_item_json(it, sim[i].score));
    }
    json_t *o =
        json_pack("{s:s, s:o, s:s}", "item", r->params[0], "items", items, "source", "dp_release");
    json_t *rel = release_json(r, x->rel->info.mechanism, x->rel->info.epsilon, x->rel->info.delta,
                               x->release_id, x->released_at, x->stale);
    json_object_set_new(rel, "max_items_per_user", json_integer(x->rel->info.max_items_per_user));
    json_object_set_new(rel, "l2_sensitivity", json_real(x->rel->info.l2_sensitivity));
    json_object_set_new(rel, "noise_scale", json_real(x->rel->info.noise_scale));
    json_object_set_new(rel, "domain_items", json_integer((json_int_t)x->n));
    json_object_set_new(o, "release", rel);
    if (!row)
        json_object_set_new(o, "note",
                            json_string("only the items of the DP popular list have "
                                        "public similar items"));
    pvg_srv_reply_json(r, 200, o);
}

/* Similar items for shoppers and analysts from the DP-trained model
 * (catalog items only: an item outside the operator's catalog neither asks
 * nor appears), audited like the operator's similar items. */
static void similar_dp_model(pvg_srv_req *r, pvg_srv_model *dm, size_t k)
{
    pvg_scored_item out[K_MAX];
    size_t n = 0;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_access g;
    pvg_srv_access_init(r, &g);
    int64_t ix = pvg_model_item_index(dm->model, r->params[0]);
    int public_item = ix >= 0 && dm->catalog[ix].in_catalog;
    pvg_status st = pvg_access_similar(&g, dm->model, r->params[0],
                                       r->who.role == PVG_ROLE_USER ? r->who.pseudonym : NULL,
                                       K_MAX, out, &n, &e);
    if (st == PVG_ERR_NOT_FOUND && !r->gate_audit_failed) {
        st = PVG_OK; /* outside the DP model's (public) items: no public neighbours */
        n = 0;
    }
    if (st != PVG_OK) {
        pvg_srv_reply_access(r, "similar", st, &e);
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; public_item && i < n && json_array_size(items) < k; i++)
        if (dm->catalog[out[i].item_index].in_catalog)
            json_array_append_new(items, item_json(dm, out[i].item_index, out[i].score));
    json_t *o = json_pack("{s:s, s:o, s:s, s:o}", "item", r->params[0], "items", items, "source",
                          "dp_model", "model", dp_model_json(dm));
    if (!public_item)
        json_object_set_new(o, "note",
                            json_string("only the catalog items of the DP-trained model have "
                                        "public similar items"));
    pvg_srv_reply_json(r, 200, o);
}

static void h_similar(pvg_srv_req *r)
{
    size_t k;
    if (query_k(r, &k)) return;
    if (r->who.role != PVG_ROLE_ADMIN) {
        pvg_srv_model *dm = pvg_srv_dp_model_acquire(r->srv);
        if (dp_model_has_similar(dm)) {
            similar_dp_model(r, dm, k);
            pvg_srv_model_release(dm);
            return;
        }
        pvg_srv_model_release(dm);
    }
    pvg_srv_model *m = need_model(r);
    if (!m) return;
    if (r->who.role != PVG_ROLE_ADMIN) {
        similar_released(r, m, k);
        pvg_srv_model_release(m);
        return;
    }
    /* the operator's own tool: the (non-DP) model */
    pvg_scored_item out[K_MAX];
    size_t n = 0;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_access g;
    pvg_srv_access_init(r, &g);
    pvg_status st = pvg_access_similar(&g, m->model, r->params[0], NULL, k, out, &n, &e);
    if (st == PVG_ERR_NOT_FOUND && !r->gate_audit_failed) {
        pvg_srv_reply_error(r, 404, "not_found", "item \"%.100s\" is not in the model",
                            r->params[0]);
    } else if (st == PVG_ERR_UNSUPPORTED) {
        pvg_srv_reply_error(r, 422, "unsupported", "the %s model keeps no item similarity",
                            pvg_model_type_name(pvg_model_type_of(m->model)));
    } else if (st != PVG_OK) {
        pvg_srv_reply_access(r, "similar", st, &e);
    } else {
        json_t *items = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(items, item_json(m, out[i].item_index, out[i].score));
        pvg_srv_reply_json(
            r, 200,
            json_pack("{s:s, s:o, s:s}", "item", r->params[0], "items", items, "source", "model"));
    }
    pvg_srv_model_release(m);
}

static void h_popular(pvg_srv_req *r)
{
    size_t k;
    if (query_k(r, &k)) return;
    pvg_srv_model *dm = pvg_srv_dp_model_acquire(r->srv);
    if (dm && dm->n_dp_popular) {
        json_t *o = json_object();
        dp_popular_answer(r, dm, k, o);
        pvg_srv_model_release(dm);
        pvg_srv_reply_json(r, 200, o);
        return;
    }
    pvg_srv_model_release(dm);
    pvg_srv_model *m = need_model(r);
    if (!m) return;
    const pvg_srv_popular *pop = need_popular(r, m);
    if (pop) {
        json_t *o = json_object();
        popular_answer(r, pop, k, o);
        json_object_set_new(o, "source", json_string("dp_release"));
        pvg_srv_reply_json(r, 200, o);
    }
    pvg_srv_model_release(m);
}

/* ---- the user's rights ---- */

static void h_export(pvg_srv_req *r)
{
    const char *user = r->params[0];
    char *json = NULL;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_access g;
    pvg_srv_access_init(r, &g);
    pvg_status st = pvg_access_export(&g, user, &json, &e);
    if (st != PVG_OK) {
        pvg_srv_reply_access(r, "export", st, &e);
        return;
    }
    free(r->out);
    r->out = strdup(json);
    pvg_free(json);
    if (!r->out) {
        pvg_srv_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    r->out_len = strlen(r->out);
    r->status = 200;
    r->ctype = "application/json";
}

typedef struct revoke_ctx {
    pvg_srv_req *r;
    long long revoked;
} revoke_ctx;

/* Run by the gate after the audit entry, before the erasure: revoke the
 * user's tokens (and count them; the erasure then deletes their rows). */
static pvg_status revoke_tokens(void *ctx, const unsigned char *pseudonym)
{
    revoke_ctx *rc = ctx;
    pvg_status st = pvg_auth_revoke_user(pvg_srv_req_store(rc->r), pseudonym, &rc->revoked, NULL);
    pvg_srv_authcache_clear(rc->r->srv->authcache); /* the revocation takes effect at once */
    return st; /* a failed revocation stops the erasure: no live token outlives it */
}

static void h_delete(pvg_srv_req *r)
{
    const char *user = r->params[0];
    pvg_error e;
    pvg_error_clear(&e);
    pvg_access g;
    pvg_srv_access_init(r, &g);
    revoke_ctx rc = {r, 0};
    pvg_status st = pvg_access_erase(&g, user, revoke_tokens, &rc, &e);
    if (st != PVG_OK) {
        pvg_srv_reply_access(r, "delete", st, &e);
        return;
    }
    pvg_srv_reply_json(r, 200,
                       json_pack("{s:s, s:b, s:I}", "user", user, "deleted", 1, "tokens_revoked",
                                 (json_int_t)rc.revoked));
}

/* The purposes of the store's policy (name, description, event types, the
 * consent switch that governs each or null) with whether consent c grants
 * each: the one table of purposes, the same the export shows. A purpose
 * entry without a "consent" field is governed by the switch of its name
 * (the access gate's rule), or by none. */
static json_t *purposes_json(pvg_store *s, const pvg_consent *c)
{
    json_t *root = json_loads(pvg_store_policy_json(s), 0, NULL);
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(root, "purposes"), i, e)
    {
        json_t *name = json_object_get(e, "name"), *cons = json_object_get(e, "consent");
        const char *sw = json_is_string(cons)            ? json_string_value(cons)
                         : !cons && json_is_string(name) ? json_string_value(name)
                                                         : NULL;
        int known_sw = sw && (strcmp(sw, "personalization") == 0 || strcmp(sw, "analytics") == 0);
        if (!cons && !known_sw) sw = NULL; /* named like no switch: none governs it */
        int granted = !sw                                  ? 1
                      : strcmp(sw, "personalization") == 0 ? c->personalization
                      : strcmp(sw, "analytics") == 0       ? c->analytics
                                                           : 0;
        json_t *types = json_object_get(e, "event_types");
        json_array_append_new(out,
                              json_pack("{s:O?, s:O?, s:o, s:s?, s:b}", "name", name, "description",
                                        json_object_get(e, "description"), "event_types",
                                        json_is_array(types) ? json_incref(types) : json_array(),
                                        "consent", sw, "granted", granted));
    }
    json_decref(root);
    return out;
}

static void consent_answer(pvg_srv_req *r, const char *user, const pvg_consent *c)
{
    pvg_srv_reply_json(r, 200,
                       json_pack("{s:s, s:b, s:b, s:o}", "user", user, "personalization",
                                 c->personalization, "analytics", c->analytics, "purposes",
                                 purposes_json(pvg_srv_req_store(r), c)));
}

static void h_consent_get(pvg_srv_req *r)
{
    const char *user = r->params[0];
    pvg_consent c;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_access g;
    pvg_srv_access_init(r, &g);
    pvg_status st = pvg_access_consent_get(&g, user, &c, &e);
    if (st != PVG_OK) {
        pvg_srv_reply_access(r, "consent", st, &e);
        return;
    }
    consent_answer(r, user, &c);
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_NULL:
        return "null";
    default:
        return "a boolean";
    }
}

/* 400 naming the field that is wrong (NULL: the body as a whole) and what
 * was expected there. */
static void body_error(pvg_srv_req *r, const char *field, const char *expected, const char *fmt,
                       ...) PVG_PRINTF(4, 5);
static void body_error(pvg_srv_req *r, const char *field, const char *expected, const char *fmt,
                       ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:s, s:s, s:i, s:s}", "error", "invalid", "message", msg, "status", 400,
                          "expected", expected);
    if (field) json_object_set_new(o, "field", json_string(field));
    pvg_srv_reply_json(r, 400, o);
}

/* PUT and PATCH alike: only the switches present change (the others keep
 * their value); every field present must be a known switch with a
 * boolean, and the error names the field, what was expected and what it
 * holds. */
static void h_consent_put(pvg_srv_req *r)
{
    const char *user = r->params[0];
    json_t *doc = pvg_srv_req_json(r);
    if (!doc) return;
    if (!json_is_object(doc)) {
        body_error(r, NULL, "an object",
                   "request body: expected an object {\"personalization\": bool, \"analytics\": "
                   "bool} (either or both), got %s",
                   json_kind(doc));
        json_decref(doc);
        return;
    }
    int sw[2] = {-1, -1}; /* personalization, analytics; -1: keep */
    const char *key;
    json_t *val;
    json_object_foreach(doc, key, val)
    {
        int which = strcmp(key, "personalization") == 0 ? 0
                    : strcmp(key, "analytics") == 0     ? 1
                                                        : -1;
        if (which < 0) {
            body_error(r, key, "\"personalization\" or \"analytics\"",
                       "request body: field \"%.60s\": unknown; expected \"personalization\" or "
                       "\"analytics\"",
                       key);
            json_decref(doc);
            return;
        }
        if (!json_is_boolean(val)) {
            body_error(r, key, "true or false",
                       "request body: field \"%s\": expected true or false, got %s", key,
                       json_kind(val));
            json_decref(doc);
            return;
        }
        sw[which] = json_is_true(val);
    }
    json_decref(doc);
    if (sw[0] < 0 && sw[1] < 0) {
        body_error(r, NULL, "\"personalization\" and/or \"analytics\"",
                   "request body: expected at least one of the fields \"personalization\" and "
                   "\"analytics\", got an empty object");
        return;
    }
    pvg_consent c;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_access g;
    pvg_srv_access_init(r, &g);
    pvg_status st = pvg_access_consent_change(&g, user, sw[0], sw[1], &c, &e);
    if (st != PVG_OK) {
        pvg_srv_reply_access(r, "consent", st, &e);
        return;
    }
    consent_answer(r, user, &c);
}

/* ---- the shopper's view of the audit log ---- */

static int audit_view_json(void *ctx, const pvg_access_audit_view *v)
{
    char when[32];
    pvg_format_datetime(v->ts, when, sizeof when);
    json_array_append_new(ctx,
                          json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "seq", (json_int_t)v->seq,
                                    "time", when, "actor", v->actor_kind, "action", v->action,
                                    "purpose", v->purpose, "outcome", v->outcome));
    return 0;
}

static void h_audit(pvg_srv_req *r)
{
    const char *user = r->params[0];
    size_t limit = 100;
    const char *v = pvg_srv_req_query(r, "limit");
    if (v) {
        char *end = NULL;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < 1 || x > 1000) {
            pvg_srv_reply_error(r, 400, "invalid",
                                "query parameter limit: want an integer 1..1000, got \"%.40s\"", v);
            return;
        }
        limit = (size_t)x;
    }
    json_t *entries = json_array();
    long long total = 0;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_access g;
    pvg_srv_access_init(r, &g);
    pvg_status st = pvg_access_audit_of_user(&g, user, limit, audit_view_json, entries, &total, &e);
    if (st != PVG_OK) {
        json_decref(entries);
        pvg_srv_reply_access(r, "audit", st, &e);
        return;
    }
    pvg_srv_reply_json(r, 200,
                       json_pack("{s:s, s:I, s:I, s:o}", "user", user, "total", (json_int_t)total,
                                 "shown", (json_int_t)json_array_size(entries), "entries",
                                 entries));
}

/* ---- the dashboard: time series and operator actions ---- */

static void h_timeseries(pvg_srv_req *r)
{
    const char *w = pvg_srv_req_query(r, "window");
    int day = 0;
    if (w && strcmp(w, "24h") == 0)
        day = 1;
    else if (w && strcmp(w, "1h") != 0) {
        pvg_srv_reply_error(r, 400, "invalid",
                            "query parameter window: want \"1h\" or \"24h\", got \"%.40s\"", w);
        return;
    }
    json_t *o = pvg_srv_ts_json(&r->srv->ts, pvg_srv_req_store(r), day, r->srv->started_at);
    if (!o) {
        pvg_srv_reply_error(r, 500, "internal", "cannot build the time series");
        return;
    }
    pvg_srv_reply_json(r, 200, o);
}

static int key_json(void *ctx, const pvg_auth_key_info *k)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:f, s:I, s:s}", "id", k->key_id, "role",
                          pvg_role_name(k->role), "label", k->label ? k->label : "", "rate_per_s",
                          k->rate_per_s, "created_at", (json_int_t)k->created_at, "state",
                          k->revoked   ? "revoked"
                          : k->expired ? "expired"
                                       : "active");
    json_object_set_new(o, "expires_at",
                        k->expires_at ? json_integer((json_int_t)k->expires_at) : json_null());
    json_array_append_new(ctx, o);
    return 0;
}

static void h_keys_list(pvg_srv_req *r)
{
    json_t *keys = json_array();
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_auth_apikey_foreach(pvg_srv_req_store(r), key_json, keys, &e);
    if (st != PVG_OK) {
        json_decref(keys);
        pvg_srv_reply_status(r, "api keys", st, &e);
        return;
    }
    pvg_srv_reply_json(r, 200, json_pack("{s:o, s:s}", "keys", keys, "you", r->who.key_id));
}

/* Revokes a credential (API key or user token) by id, as `privguide apikey
 * revoke` does, and audits it (action "credential_revoke"). The key of the
 * request itself is refused (409): the page would lock itself out. */
static void h_credential_revoke(pvg_srv_req *r)
{
    const char *id = r->params[0];
    size_t n = strlen(id);
    int hex = n == PVG_AUTH_ID_HEX;
    for (size_t i = 0; hex && i < n; i++)
        hex = isxdigit((unsigned char)id[i]) != 0;
    if (!hex) {
        pvg_srv_reply_error(r, 400, "invalid",
                            "credential id: want %d hex digits (the part after pvgk_ or pvgt_), "
                            "got \"%.40s\"",
                            PVG_AUTH_ID_HEX, id);
        return;
    }
    if (strcmp(id, r->who.key_id) == 0) {
        pvg_srv_reply_error(r, 409, "own_key",
                            "this is the key of the request: revoke it with another admin key or "
                            "with privguide apikey revoke %s",
                            id);
        return;
    }
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_auth_revoke(pvg_srv_req_store(r), id, &e);
    if (st != PVG_OK) {
        pvg_srv_reply_status(r, "revoke", st, &e);
        return;
    }
    pvg_srv_authcache_clear(r->srv->authcache); /* refused from the next request on */
    char detail[96];
    snprintf(detail, sizeof detail, "credential %.20s revoked", id);
    st = pvg_srv_audit_log(&r->srv->audit, r->actor, "credential_revoke", "", detail);
    if (st != PVG_OK) {
        pvg_srv_reply_error(r, 503, "audit_unavailable",
                            "credential %s is revoked, but the audit log could not record it (%s)",
                            id, pvg_strerror(st));
        return;
    }
    pvg_srv_reply_json(r, 200, json_pack("{s:s, s:b}", "id", id, "revoked", 1));
}

/* Rotates the master key as `privguide keys rotate` does, from inside the
 * running server (pvg_srv_keys_rotate), and audits it (action
 * "master_key_rotate"). */
static void h_keys_rotate(pvg_srv_req *r)
{
    long long n = 0;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_srv_keys_rotate(r->srv, pvg_srv_req_store(r), &n, &e);
    if (st == PVG_ERR_BUSY) {
        pvg_srv_reply_error(r, 409, "busy", "keys rotate: %s", e.text);
        return;
    }
    if (st != PVG_OK) {
        pvg_srv_reply_status(r, "keys rotate", st, &e);
        return;
    }
    char detail[96];
    snprintf(detail, sizeof detail, "master key rotated: %lld data keys rewrapped", n);
    st = pvg_srv_audit_log(&r->srv->audit, r->actor, "master_key_rotate", "", detail);
    if (st != PVG_OK) {
        pvg_srv_reply_error(r, 503, "audit_unavailable",
                            "the master key is rotated, but the audit log could not record it (%s)",
                            pvg_strerror(st));
        return;
    }
    pvg_srv_reply_json(r, 200, json_pack("{s:b, s:I}", "rotated", 1, "rewrapped", (json_int_t)n));
}

/* ---- pages ---- */

static void h_page(pvg_srv_req *r)
{
    const char *p = pvg_srv_routes()[r->route].pattern;
    const char *name = strcmp(p, "/") == 0         ? "index.html"
                       : strcmp(p, "/shop") == 0   ? "shop.html"
                       : strcmp(p, "/portal") == 0 ? "portal.html"
                                                   : "dashboard.html";
    pvg_srv_serve_static(r, name);
}

static void h_static(pvg_srv_req *r)
{
    pvg_srv_serve_static(r, r->params[0]);
}
