/*
 * metrics.c - request counters and latency histograms per route, and the
 * Prometheus text rendering of /metrics (with store volume and privacy
 * budget spent per dataset).
 */
#include "server/server_internal.h"

#include <privguide/ledger.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const double pvg_srv_lat_bounds[PVG_SRV_LAT_BUCKETS] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
                                                0.1,    0.25,  0.5,   1.0,   2.5,   10.0};

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
    while (b < PVG_SRV_LAT_BUCKETS && seconds > pvg_srv_lat_bounds[b]) b++;
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

static int ledger_row(void *ctx, const char *dataset, const pvg_ledger_summary *s)
{
    buf *b = ctx;
    bprintf(b, "privguide_budget_epsilon_spent{dataset=\"%s\"} %.17g\n", dataset, s->spent_epsilon);
    bprintf(b, "privguide_budget_epsilon_total{dataset=\"%s\"} %.17g\n", dataset, s->total_epsilon);
    bprintf(b, "privguide_budget_delta_spent{dataset=\"%s\"} %.17g\n", dataset, s->spent_delta);
    bprintf(b, "privguide_budget_releases{dataset=\"%s\"} %lld\n", dataset, s->releases);
    return 0;
}

char *pvg_srv_metrics_render(pvg_server *srv, pvg_store *s, int with_store)
{
    buf b = {malloc(8192), 0, 8192, 0};
    if (!b.p) return NULL;
    b.p[0] = 0;
    pvg_srv_metrics *m = &srv->metrics;
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
        for (int k = 0; k <= PVG_SRV_LAT_BUCKETS; k++) cum += atomic_load(&m->routes[i].lat[k]);
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
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        bprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %lld\n", counters[i].name,
                counters[i].help, counters[i].name, counters[i].name,
                atomic_load(counters[i].v));
    bprintf(&b, "# HELP privguide_http_inflight Requests in progress.\n"
                "# TYPE privguide_http_inflight gauge\nprivguide_http_inflight %ld\n",
            atomic_load(&srv->inflight));
    bprintf(&b, "# HELP privguide_uptime_seconds Seconds since start.\n"
                "# TYPE privguide_uptime_seconds gauge\nprivguide_uptime_seconds %lld\n",
            (long long)(time(NULL) - srv->started_at));
    bprintf(&b, "# HELP privguide_model_generation Model generation in service.\n"
                "# TYPE privguide_model_generation gauge\nprivguide_model_generation %ld\n",
            pvg_server_model_generation(srv));
    pvg_store_counts c;
    if (with_store && pvg_store_counts_get(s, &c, NULL) == PVG_OK) {
        bprintf(&b, "# HELP privguide_store_users Users held.\n# TYPE privguide_store_users gauge\n"
                    "privguide_store_users %lld\n",
                c.users);
        bprintf(&b, "# HELP privguide_store_events Events held.\n"
                    "# TYPE privguide_store_events gauge\nprivguide_store_events %lld\n",
                c.events);
        bprintf(&b, "# HELP privguide_store_items Catalog items.\n"
                    "# TYPE privguide_store_items gauge\nprivguide_store_items %lld\n",
                c.items);
    }
    bprintf(&b, "# HELP privguide_budget_epsilon_spent Privacy budget spent per dataset.\n"
                "# TYPE privguide_budget_epsilon_spent gauge\n");
    (void)pvg_ledger_datasets_foreach(s, ledger_row, &b, NULL);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
