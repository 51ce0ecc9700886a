/*
 * timeseries.c - what the dashboard charts: ring buffers of request counts,
 * error counts by class, latency histograms and accepted events per time
 * bucket (10 s for the last hour, 1 min for the last day), the model builds
 * the server loaded, and the budget spent per purpose over time (read from
 * the ledger's releases when asked).
 *
 * Owned by the server (pvg_server.ts); no process-wide state. The request
 * path costs a coarse clock read and a few relaxed atomic increments per
 * ring. A slot is reused when its bucket comes round again: the first
 * writer of the new bucket claims it (compare-and-swap of its bucket
 * number) and zeroes it; an increment racing that claim, in the first
 * instant of a bucket, can be lost. Reads see a slot only when it holds the
 * bucket asked for.
 *
 * Everything here moves with what shoppers do (exact counts): it is served
 * to admins only (GET /v1/admin/timeseries).
 */
#include "server/server_internal.h"

#include <privguide/ledger.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define FINE_STEP 10
#define FINE_SLOTS 360 /* one hour */
#define COARSE_STEP 60
#define COARSE_SLOTS 1440 /* one day */
#define LAT_BASE 5e-5     /* upper bound of the first latency bucket: 50 us */

/* The finite upper bounds, 50 us x 2^(b/2) (a constant table: the request
 * path computes no power). */
#define EVEN(k) (LAT_BASE * (double)(1u << (k)))
#define ODD(k) (LAT_BASE * (double)(1u << (k)) * 1.41421356237309504880)
#define PAIR(k) EVEN(k), ODD(k)
static const double LAT_BOUNDS[PVG_SRV_TS_LAT_BUCKETS - 1] = {
    PAIR(0),  PAIR(1),  PAIR(2),  PAIR(3),  PAIR(4),  PAIR(5),  PAIR(6),
    PAIR(7),  PAIR(8),  PAIR(9),  PAIR(10), PAIR(11), PAIR(12), PAIR(13),
    PAIR(14), PAIR(15), PAIR(16), PAIR(17), EVEN(18), ODD(18),  EVEN(19)};
_Static_assert(PVG_SRV_TS_LAT_BUCKETS == 40, "the bounds table has 39 entries");

double pvg_srv_ts_lat_bound(int b)
{
    if (b < 0) b = 0;
    if (b >= PVG_SRV_TS_LAT_BUCKETS - 1) return INFINITY;
    return LAT_BOUNDS[b];
}

int pvg_srv_ts_lat_bucket(double seconds)
{
    double x = seconds / LAT_BASE;
    if (!(x > 1.0)) return 0; /* also NaN and negatives */
    if (seconds > LAT_BOUNDS[PVG_SRV_TS_LAT_BUCKETS - 2]) return PVG_SRV_TS_LAT_BUCKETS - 1;
    int i = (int)ceil(2.0 * log2(x));
    if (i > PVG_SRV_TS_LAT_BUCKETS - 2) i = PVG_SRV_TS_LAT_BUCKETS - 2;
    /* log2 rounding may land one bucket off an exact bound */
    if (i > 0 && seconds <= LAT_BOUNDS[i - 1]) i--;
    if (seconds > LAT_BOUNDS[i]) i++;
    return i;
}

static int ring_init(pvg_srv_ts_ring *g, int step, size_t n)
{
    g->step = step;
    g->n = n;
    g->slots = calloc(n, sizeof *g->slots);
    if (!g->slots) return -1;
    for (size_t i = 0; i < n; i++)
        atomic_init(&g->slots[i].bucket, -1);
    return 0;
}

int pvg_srv_ts_init(pvg_srv_timeseries *ts)
{
    memset(ts, 0, sizeof *ts);
    if (ring_init(&ts->fine, FINE_STEP, FINE_SLOTS) ||
        ring_init(&ts->coarse, COARSE_STEP, COARSE_SLOTS)) {
        free(ts->fine.slots);
        free(ts->coarse.slots);
        ts->fine.slots = ts->coarse.slots = NULL;
        return -1;
    }
    pthread_mutex_init(&ts->builds_mu, NULL);
    ts->ready = 1;
    return 0;
}

void pvg_srv_ts_free(pvg_srv_timeseries *ts)
{
    if (!ts->ready) return;
    free(ts->fine.slots);
    free(ts->coarse.slots);
    ts->fine.slots = ts->coarse.slots = NULL;
    pthread_mutex_destroy(&ts->builds_mu);
    ts->ready = 0;
}

static long long now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME_COARSE, &t);
    return (long long)t.tv_sec;
}

/* The slot of the bucket holding time t, claimed (and zeroed) when it still
 * holds an older bucket; NULL when it already holds a newer one (a clock
 * that went back). */
static pvg_srv_ts_slot *slot_for(pvg_srv_ts_ring *g, long long t)
{
    long long b = t / g->step;
    pvg_srv_ts_slot *s = &g->slots[(size_t)(b % (long long)g->n)];
    long long cur = atomic_load_explicit(&s->bucket, memory_order_acquire);
    if (cur == b) return s;
    if (cur > b) return NULL;
    if (atomic_compare_exchange_strong(&s->bucket, &cur, b)) {
        atomic_store_explicit(&s->requests, 0, memory_order_relaxed);
        atomic_store_explicit(&s->client_errors, 0, memory_order_relaxed);
        atomic_store_explicit(&s->server_errors, 0, memory_order_relaxed);
        atomic_store_explicit(&s->events, 0, memory_order_relaxed);
        for (int i = 0; i < PVG_SRV_TS_LAT_BUCKETS; i++)
            atomic_store_explicit(&s->lat[i], 0, memory_order_relaxed);
        return s;
    }
    return cur == b ? s : NULL; /* another thread claimed it: for b, or newer */
}

static void observe_ring(pvg_srv_ts_ring *g, long long t, int status, int lb)
{
    pvg_srv_ts_slot *s = slot_for(g, t);
    if (!s) return;
    atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
    if (status >= 500)
        atomic_fetch_add_explicit(&s->server_errors, 1, memory_order_relaxed);
    else if (status >= 400)
        atomic_fetch_add_explicit(&s->client_errors, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->lat[lb], 1, memory_order_relaxed);
}

void pvg_srv_ts_observe(pvg_srv_timeseries *ts, int status, double seconds)
{
    if (!ts->ready) return;
    long long t = now_seconds();
    int lb = pvg_srv_ts_lat_bucket(seconds);
    observe_ring(&ts->fine, t, status, lb);
    observe_ring(&ts->coarse, t, status, lb);
}

void pvg_srv_ts_events(pvg_srv_timeseries *ts, long long n)
{
    if (!ts->ready || n <= 0) return;
    long long t = now_seconds();
    pvg_srv_ts_slot *s = slot_for(&ts->fine, t);
    if (s) atomic_fetch_add_explicit(&s->events, n, memory_order_relaxed);
    s = slot_for(&ts->coarse, t);
    if (s) atomic_fetch_add_explicit(&s->events, n, memory_order_relaxed);
}

/* The quality recorded for the build: the evaluation `privguide eval
 * --json` wrote to <data_dir>/evaluation.json, when that file is at least
 * as new as the model file (it evaluated this build or a later one). The
 * smallest cut-off k with both recall@k and ndcg@k is taken. */
static void build_quality(pvg_srv_ts_build *b, const char *data_dir, int64_t model_mtime_ns)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/evaluation.json", data_dir);
    struct stat sb;
    if (stat(path, &sb) != 0) return;
    int64_t ev_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    if (ev_ns < model_mtime_ns) return;
    json_t *ev = json_load_file(path, 0, NULL);
    if (!ev) return;
    const char *key;
    json_t *v;
    int best = 0;
    json_object_foreach(ev, key, v)
    {
        int k = 0;
        char tail;
        if (sscanf(key, "recall@%d%c", &k, &tail) != 1 || k <= 0 || !json_is_number(v)) continue;
        char nk[32];
        snprintf(nk, sizeof nk, "ndcg@%d", k);
        json_t *nd = json_object_get(ev, nk);
        if (!json_is_number(nd) || (best && k >= best)) continue;
        best = k;
        b->recall = json_number_value(v);
        b->ndcg = json_number_value(nd);
    }
    if (best) {
        b->has_quality = 1;
        b->k = best;
        b->evaluated_at = (int64_t)sb.st_mtim.tv_sec;
    }
    json_decref(ev);
}

void pvg_srv_ts_model_loaded(pvg_srv_timeseries *ts, const pvg_srv_model *m, const char *data_dir)
{
    if (!ts->ready || !m) return;
    pvg_srv_ts_build b;
    memset(&b, 0, sizeof b);
    b.generation = m->generation;
    b.built_at = m->mtime_ns / 1000000000;
    b.loaded_at = m->loaded_at;
    snprintf(b.type, sizeof b.type, "%s", pvg_model_type_name(pvg_model_type_of(m->model)));
    b.items = (long long)pvg_model_n_items(m->model);
    b.users = (long long)pvg_model_n_users(m->model);
    build_quality(&b, data_dir, m->mtime_ns);
    pthread_mutex_lock(&ts->builds_mu);
    ts->builds[ts->n_builds % PVG_SRV_TS_BUILDS] = b;
    ts->n_builds++;
    pthread_mutex_unlock(&ts->builds_mu);
}

/* The q-quantile (0 < q < 1) of a histogram, in seconds: interpolated
 * geometrically inside its bucket (linearly in the first); -1 when empty. */
double pvg_srv_ts_quantile(const long long *h, double q)
{
    long long n = 0;
    for (int i = 0; i < PVG_SRV_TS_LAT_BUCKETS; i++)
        n += h[i];
    if (n <= 0) return -1;
    double rank = q * (double)n, acc = 0;
    for (int i = 0; i < PVG_SRV_TS_LAT_BUCKETS; i++) {
        if (!h[i]) continue;
        if (acc + (double)h[i] >= rank) {
            double f = (rank - acc) / (double)h[i];
            if (i == 0) return f * pvg_srv_ts_lat_bound(0);
            double lo = pvg_srv_ts_lat_bound(i - 1);
            if (i == PVG_SRV_TS_LAT_BUCKETS - 1) return lo; /* beyond the last bound */
            double hi = pvg_srv_ts_lat_bound(i);
            return lo * pow(hi / lo, f);
        }
        acc += (double)h[i];
    }
    return pvg_srv_ts_lat_bound(PVG_SRV_TS_LAT_BUCKETS - 2);
}

typedef struct budget_ctx {
    long long start, step;
    size_t n;
    double base[PVG_LEDGER_N_PURPOSES];
    double *inc; /* [purpose][point] */
    long long in_window;
} budget_ctx;

static int budget_release(void *vctx, const pvg_ledger_release *r)
{
    budget_ctx *c = vctx;
    int p = (int)r->purpose;
    if (p < 0 || p >= PVG_LEDGER_N_PURPOSES) return 0;
    long long t = (long long)r->created_at;
    if (t < c->start) {
        c->base[p] += r->epsilon;
        return 0;
    }
    long long i = (t - c->start) / c->step;
    if (i >= (long long)c->n) i = (long long)c->n - 1; /* the clock moved: count it last */
    c->inc[(size_t)p * c->n + (size_t)i] += r->epsilon;
    c->in_window++;
    return 0;
}

/* The epsilon spent per purpose at the end of each point (cumulative),
 * from the ledger's releases. */
static json_t *budget_series(pvg_store *s, long long start, long long step, size_t n)
{
    budget_ctx c;
    memset(&c, 0, sizeof c);
    c.start = start;
    c.step = step;
    c.n = n;
    c.inc = calloc((size_t)PVG_LEDGER_N_PURPOSES * n, sizeof *c.inc);
    if (!c.inc) return json_null();
    pvg_status st = pvg_ledger_releases_foreach(s, NULL, budget_release, &c, NULL);
    pvg_ledger_state ls;
    int have_state = pvg_ledger_state_get(s, &ls, NULL) == PVG_OK;
    if (st != PVG_OK) {
        free(c.inc);
        return json_null();
    }
    json_t *purposes = json_object();
    for (int p = 0; p < PVG_LEDGER_N_PURPOSES; p++) {
        json_t *a = json_array();
        double acc = c.base[p];
        for (size_t i = 0; i < n; i++) {
            acc += c.inc[(size_t)p * n + i];
            json_array_append_new(a, json_real(acc));
        }
        json_object_set_new(purposes, pvg_ledger_purpose_name((pvg_ledger_purpose)p), a);
    }
    free(c.inc);
    json_t *o = json_pack("{s:o, s:I}", "epsilon_spent", purposes, "releases_in_window",
                          (json_int_t)c.in_window);
    json_object_set_new(o, "total_epsilon",
                        have_state && ls.has_total ? json_real(ls.total_epsilon) : json_null());
    return o;
}

json_t *pvg_srv_ts_json(pvg_srv_timeseries *ts, pvg_store *s, int day, int64_t started_at)
{
    pvg_srv_ts_ring *g = day ? &ts->coarse : &ts->fine;
    long long now = now_seconds();
    long long last = now / g->step, first = last - (long long)g->n + 1;
    json_t *t = json_array(), *req = json_array(), *c4 = json_array(), *c5 = json_array(),
           *p50 = json_array(), *p95 = json_array(), *p99 = json_array(), *ev = json_array();
    for (long long b = first; b <= last; b++) {
        pvg_srv_ts_slot *sl = &g->slots[(size_t)(b % (long long)g->n)];
        long long v[4] = {0, 0, 0, 0}, h[PVG_SRV_TS_LAT_BUCKETS] = {0};
        if (atomic_load_explicit(&sl->bucket, memory_order_acquire) == b) {
            v[0] = atomic_load_explicit(&sl->requests, memory_order_relaxed);
            v[1] = atomic_load_explicit(&sl->client_errors, memory_order_relaxed);
            v[2] = atomic_load_explicit(&sl->server_errors, memory_order_relaxed);
            v[3] = atomic_load_explicit(&sl->events, memory_order_relaxed);
            for (int i = 0; i < PVG_SRV_TS_LAT_BUCKETS; i++)
                h[i] = atomic_load_explicit(&sl->lat[i], memory_order_relaxed);
            /* a claim racing this read: the slot moved on */
            if (atomic_load_explicit(&sl->bucket, memory_order_acquire) != b) {
                memset(v, 0, sizeof v);
                memset(h, 0, sizeof h);
            }
        }
        json_array_append_new(t, json_integer((json_int_t)(b * g->step)));
        json_array_append_new(req, json_integer(v[0]));
        json_array_append_new(c4, json_integer(v[1]));
        json_array_append_new(c5, json_integer(v[2]));
        json_array_append_new(ev, json_integer(v[3]));
        double q[3] = {pvg_srv_ts_quantile(h, 0.50), pvg_srv_ts_quantile(h, 0.95),
                       pvg_srv_ts_quantile(h, 0.99)};
        json_t *qa[3] = {p50, p95, p99};
        for (int k = 0; k < 3; k++)
            json_array_append_new(qa[k], q[k] < 0 ? json_null() : json_real(q[k] * 1e3));
    }
    json_t *o = json_pack("{s:s, s:i, s:I, s:I, s:I, s:{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}}",
                          "window", day ? "24h" : "1h", "step_seconds", g->step, "start",
                          (json_int_t)(first * g->step), "now", (json_int_t)now,
                          "server_started_at", (json_int_t)started_at, "series", "t", t, "requests",
                          req, "client_errors", c4, "server_errors", c5, "latency_p50_ms", p50,
                          "latency_p95_ms", p95, "latency_p99_ms", p99, "events_accepted", ev);
    json_object_set_new(o, "budget", budget_series(s, first * g->step, g->step, g->n));
    json_t *builds = json_array();
    pthread_mutex_lock(&ts->builds_mu);
    size_t nb = ts->n_builds < PVG_SRV_TS_BUILDS ? ts->n_builds : PVG_SRV_TS_BUILDS;
    for (size_t i = ts->n_builds - nb; i < ts->n_builds; i++) {
        const pvg_srv_ts_build *b = &ts->builds[i % PVG_SRV_TS_BUILDS];
        json_t *bj = json_pack("{s:I, s:I, s:I, s:s, s:I, s:I}", "generation",
                               (json_int_t)b->generation, "built_at", (json_int_t)b->built_at,
                               "loaded_at", (json_int_t)b->loaded_at, "type", b->type, "items",
                               (json_int_t)b->items, "users", (json_int_t)b->users);
        json_object_set_new(bj, "quality",
                            b->has_quality
                                ? json_pack("{s:i, s:f, s:f, s:s, s:I}", "k", b->k, "recall",
                                            b->recall, "ndcg", b->ndcg, "source", "evaluation.json",
                                            "evaluated_at", (json_int_t)b->evaluated_at)
                                : json_null());
        json_array_append_new(builds, bj);
    }
    pthread_mutex_unlock(&ts->builds_mu);
    json_object_set_new(o, "models", builds);
    return o;
}
