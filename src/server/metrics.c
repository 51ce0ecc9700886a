/*
 * metrics.c - request counters and latency histograms per route, and the
 * Prometheus text rendering of /metrics.
 *
 * What an analyst sees is DP or not personal: uptime, the model's
 * generation and build time, the catalog's size (items with catalog data,
 * not the bare stub rows ingest adds for event items missing from the
 * catalog) and the privacy budget's state. Request counters, latencies and
 * the store's exact volume move with what shoppers do: admin only.
 */
#include "server/server_internal.h"

#include <privguide/ledger.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const double pvg_srv_lat_bounds[PVG_SRV_LAT_BUCKETS] = {
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0};

int pvg_srv_metrics_init(pvg_srv_metrics *m, size_t n_routes)
{
    memset(m, 0, sizeof *m);
    m->routes = calloc(n_routes, sizeof *m->routes);
    if (!m->routes) return -1;
    m->n_routes = n_routes;
    return 0;
}

void pvg_srv_metrics_free(pvg_srv_metrics *m)
{
    free(m->routes);
    m->routes = NULL;
}

void pvg_srv_metrics_observe(pvg_srv_metrics *m, int route, int status, double seconds)
{
    if (route < 0 || (size_t)route >= m->n_routes) route = (int)m->n_routes - 1;
    pvg_srv_route_metrics *rm = &m->routes[route];
    int cls = status / 100;
    if (cls < 0 || cls > 5) cls = 0;
    atomic_fetch_add(&rm->by_class[cls], 1);
    int b = 0;
    while (b < PVG_SRV_LAT_BUCKETS && seconds > pvg_srv_lat_bounds[b])
        b++;
    atomic_fetch_add(&rm->lat[b], 1);
    atomic_fetch_add(&rm->lat_sum_us, (long long)(seconds * 1e6));
}

typedef struct buf {
    char *p;
    size_t n, cap;
    int oom;
} buf;

static void bprintf(buf *b, const char *fmt, ...) PVG_PRINTF(2, 3);
#include <stdarg.h>
static void bprintf(buf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)k + 1;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static int count_catalog_item(void *ctx, const pvg_item *it)
{
    long long *n = ctx;
    if ((it->title && *it->title) || (it->category && *it->category) || it->price >= 0 ||
        (it->attrs_json && *it->attrs_json))
        (*n)++;
    return 0;
}

long long pvg_srv_catalog_items(pvg_store *s)
{
    long long n = 0;
    if (pvg_store_items_foreach(s, count_catalog_item, &n, NULL) != PVG_OK) return -1;
    return n;
}

static void budget_gauges(buf *b, pvg_store *s)
{
    pvg_ledger_state st;
    if (pvg_ledger_state_get(s, &st, NULL) != PVG_OK) return;
    bprintf(b, "# HELP privguide_budget_epsilon_total The store's total privacy budget (epsilon).\n"
               "# TYPE privguide_budget_epsilon_total gauge\n");
    if (st.has_total)
        bprintf(b, "privguide_budget_epsilon_total %.17g\nprivguide_budget_delta_total %.17g\n",
                st.total_epsilon, st.total_delta);
    bprintf(b, "# HELP privguide_budget_epsilon_spent Privacy budget spent, per purpose.\n"
               "# TYPE privguide_budget_epsilon_spent gauge\n");
    for (int p = 0; p < PVG_LEDGER_N_PURPOSES; p++) {
        const pvg_ledger_account *a = &st.purposes[p];
        const char *name = pvg_ledger_purpose_name(p);
        bprintf(b, "privguide_budget_epsilon_spent{purpose=\"%s\"} %.17g\n", name,
                a->spent_epsilon);
        bprintf(b, "privguide_budget_delta_spent{purpose=\"%s\"} %.17g\n", name, a->spent_delta);
        bprintf(b, "privguide_budget_releases{purpose=\"%s\"} %lld\n", name, a->releases);
        if (a->has_cap)
            bprintf(b,
                    "privguide_budget_epsilon_cap{purpose=\"%s\"} %.17g\n"
                    "privguide_budget_delta_cap{purpose=\"%s\"} %.17g\n",
                    name, a->cap_epsilon, name, a->cap_delta);
    }
}

char *pvg_srv_metrics_render(pvg_server *srv, pvg_store *s, int admin)
{
    buf b = {malloc(8192), 0, 8192, 0};
    if (!b.p) return NULL;
    b.p[0] = 0;
    pvg_srv_metrics *m = &srv->metrics;
    bprintf(&b,
            "# HELP privguide_uptime_seconds Seconds since start.\n"
            "# TYPE privguide_uptime_seconds gauge\nprivguide_uptime_seconds %lld\n",
            (long long)(time(NULL) - srv->started_at));
    bprintf(&b,
            "# HELP privguide_model_generation Model generation in service.\n"
            "# TYPE privguide_model_generation gauge\nprivguide_model_generation %ld\n",
            pvg_server_model_generation(srv));
    pvg_srv_model *mod = pvg_srv_model_acquire(srv);
    if (mod) {
        bprintf(&b,
                "# HELP privguide_model_built_seconds When the model in service was built (file "
                "time).\n"
                "# TYPE privguide_model_built_seconds gauge\nprivguide_model_built_seconds %lld\n",
                (long long)(mod->mtime_ns / 1000000000));
        pvg_srv_model_release(mod);
    }
    long long catalog = pvg_srv_catalog_items(s);
    if (catalog >= 0)
        bprintf(
            &b,
            "# HELP privguide_catalog_items Items of the operator's catalog (not event stubs).\n"
            "# TYPE privguide_catalog_items gauge\nprivguide_catalog_items %lld\n",
            catalog);
    budget_gauges(&b, s);
    char mon[2048]; /* access monitoring: alerts per rule, webhook outcomes */
    pvg_srv_monitor_metrics(srv, mon, sizeof mon);
    bprintf(&b, "%s", mon);
    if (!admin) goto out; /* the rest moves with what shoppers do: exact, admin only */
    const pvg_srv_route *rt = pvg_srv_routes();
    static const char *classes[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    bprintf(&b, "# HELP privguide_http_requests_total HTTP requests by route and status class.\n"
                "# TYPE privguide_http_requests_total counter\n");
    for (size_t i = 0; i < m->n_routes; i++) {
        const char *method = i < pvg_srv_routes_count() ? rt[i].method : "ANY";
        const char *path = i < pvg_srv_routes_count() ? rt[i].pattern : "unmatched";
        for (int c = 0; c < 6; c++) {
            long long v = atomic_load(&m->routes[i].by_class[c]);
            if (v)
                bprintf(&b,
                        "privguide_http_requests_total{method=\"%s\",route=\"%s\",code=\"%s\"} "
                        "%lld\n",
                        method, path, classes[c], v);
        }
    }
    bprintf(&b, "# HELP privguide_http_request_duration_seconds Request latency by route.\n"
                "# TYPE privguide_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < m->n_routes; i++) {
        const char *method = i < pvg_srv_routes_count() ? rt[i].method : "ANY";
        const char *path = i < pvg_srv_routes_count() ? rt[i].pattern : "unmatched";
        long long cum = 0;
        for (int k = 0; k <= PVG_SRV_LAT_BUCKETS; k++)
            cum += atomic_load(&m->routes[i].lat[k]);
        if (!cum) continue;
        long long acc = 0;
        for (int k = 0; k < PVG_SRV_LAT_BUCKETS; k++) {
            acc += atomic_load(&m->routes[i].lat[k]);
            bprintf(&b,
                    "privguide_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                    "le=\"%g\"} %lld\n",
                    method, path, pvg_srv_lat_bounds[k], acc);
        }
        bprintf(&b,
                "privguide_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                "le=\"+Inf\"} %lld\n",
                method, path, cum);
        bprintf(&b,
                "privguide_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.6f\n",
                method, path, atomic_load(&m->routes[i].lat_sum_us) / 1e6);
        bprintf(&b,
                "privguide_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %lld\n",
                method, path, cum);
    }
    struct {
        const char *name, *help;
        atomic_llong *v;
    } counters[] = {
        {"privguide_auth_failures_total", "Requests refused for a missing or bad credential.",
         &m->auth_failures},
        {"privguide_rate_limited_total", "Requests refused by a rate limit.", &m->rate_limited},
        {"privguide_audit_entries_total", "Audit log entries written.", &m->audit_entries},
        {"privguide_audit_failures_total", "Audit log appends that failed.", &m->audit_failures},
        {"privguide_audit_commits_total",
         "Audit group commits (entries / commits: entries per transaction).", &m->audit_commits},
        {"privguide_recommendations_personalized_total", "Personalised recommendation answers.",
         &m->recs_personal},
        {"privguide_recommendations_popular_total", "Non-personalised (DP popular) answers.",
         &m->recs_popular},
        {"privguide_recommendation_cache_hits_total", "Recommendation cache hits.", &m->cache_hits},
        {"privguide_events_accepted_total", "Events accepted by POST /v1/events.",
         &m->events_accepted},
        {"privguide_events_rejected_total", "Events refused by POST /v1/events.",
         &m->events_rejected},
        {"privguide_model_reloads_total", "Model (re)loads.", &m->model_reloads},
        {"privguide_model_reload_failures_total", "Model loads that failed.",
         &m->model_reload_failures},
        {"privguide_search_events_total", "Search events recorded for shoppers.",
         &m->search_events},
        {"privguide_search_event_failures_total",
         "Search events not recorded for a store error (the search still answered).",
         &m->search_event_failures},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        bprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %lld\n", counters[i].name,
                counters[i].help, counters[i].name, counters[i].name, atomic_load(counters[i].v));
    bprintf(&b,
            "# HELP privguide_http_inflight Requests in progress.\n"
            "# TYPE privguide_http_inflight gauge\nprivguide_http_inflight %ld\n",
            atomic_load(&srv->inflight));
    pvg_store_counts c;
    if (pvg_store_counts_get(s, &c, NULL) == PVG_OK) {
        bprintf(&b,
                "# HELP privguide_store_users Users held.\n# TYPE privguide_store_users gauge\n"
                "privguide_store_users %lld\n",
                c.users);
        bprintf(&b,
                "# HELP privguide_store_events Events held.\n"
                "# TYPE privguide_store_events gauge\nprivguide_store_events %lld\n",
                c.events);
        bprintf(&b,
                "# HELP privguide_store_items Catalog items.\n"
                "# TYPE privguide_store_items gauge\nprivguide_store_items %lld\n",
                c.items);
    }
out:
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
