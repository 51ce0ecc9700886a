/*
 * server_internal.h - shared declarations of the HTTP service's parts:
 * the server object, the request context, the routes table, the store pool,
 * the model holder, the audit writer, metrics and rate limits.
 */
#ifndef PVG_SERVER_INTERNAL_H
#define PVG_SERVER_INTERNAL_H

#include <privguide/access.h>
#include <privguide/audit.h>
#include <privguide/auth.h>
#include <privguide/model.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

struct MHD_Daemon;
struct MHD_Connection;

/* ---- access rules of a route ---- */
enum {
    PVG_SRV_PUBLIC = 1u << 0, /* no credential needed */
    PVG_SRV_ADMIN = 1u << 1,
    PVG_SRV_ANALYST = 1u << 2,
    PVG_SRV_USER = 1u << 3, /* a user token; with PVG_SRV_OWN only for its own {id} */
    PVG_SRV_OWN = 1u << 4   /* {id} must be the token's user (admins pass) */
};

#define PVG_SRV_MAX_PARAMS 2
typedef struct pvg_srv_req pvg_srv_req;
typedef void (*pvg_srv_handler)(pvg_srv_req *r);

typedef struct pvg_srv_route {
    const char *method;  /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *pattern; /* "/v1/users/{id}/consent" */
    unsigned access;     /* SRV_* bits */
    pvg_srv_handler handler;
    const char *summary;
} pvg_srv_route;

/* The table (routes.c), terminated by a zero entry, and its length. */
const pvg_srv_route *pvg_srv_routes(void);
size_t pvg_srv_routes_count(void);
/* Matches method+path; returns route index, -1 no path matches, -2 the path
 * matches with another method (405). params receive the {..} segments
 * (borrowed copies into buf). */
int pvg_srv_route_match(const char *method, const char *path, char params[PVG_SRV_MAX_PARAMS][256]);

/* ---- metrics ---- */
#define PVG_SRV_LAT_BUCKETS 13
typedef struct pvg_srv_route_metrics {
    atomic_llong by_class[6];                  /* index status/100 */
    atomic_llong lat[PVG_SRV_LAT_BUCKETS + 1]; /* last: +Inf */
    atomic_llong lat_sum_us;
} pvg_srv_route_metrics;

typedef struct pvg_srv_metrics {
    size_t n_routes; /* routes + 1 (unmatched) */
    pvg_srv_route_metrics *routes;
    atomic_llong auth_failures, rate_limited, audit_entries, audit_failures;
    atomic_llong audit_commits; /* group commits: entries / commits = mean batch */
    atomic_llong recs_personal, recs_popular, cache_hits, events_accepted, events_rejected;
    atomic_llong model_reloads, model_reload_failures;
    atomic_llong search_events, search_event_failures; /* GET /v1/search by a shopper */
} pvg_srv_metrics;

int pvg_srv_metrics_init(pvg_srv_metrics *m, size_t n_routes);
void pvg_srv_metrics_free(pvg_srv_metrics *m);
void pvg_srv_metrics_observe(pvg_srv_metrics *m, int route, int status, double seconds);
/* Prometheus text; new string (free). s: the request's store connection
 * (borrowed; a request never takes a second one from the pool, which could
 * deadlock). admin: also the exact figures (request counters, latencies, the
 * store's volume); without it only DP or non-personal facts. */
char *pvg_srv_metrics_render(pvg_server *srv, pvg_store *s, int admin);
/* Items of the operator's catalog: rows with any catalog data (title,
 * category, price, attributes), not the bare stubs ingest adds for event
 * items missing from the catalog. -1 on a store error. */
long long pvg_srv_catalog_items(pvg_store *s);
extern const double pvg_srv_lat_bounds[PVG_SRV_LAT_BUCKETS];

/* ---- rate limits (token buckets per credential id) ---- */
typedef struct pvg_srv_bucket pvg_srv_bucket;
typedef struct pvg_srv_ratelimit {
    pthread_mutex_t mu;
    pvg_srv_bucket **table;
    size_t cap, n;
} pvg_srv_ratelimit;
int pvg_srv_ratelimit_init(pvg_srv_ratelimit *rl);
void pvg_srv_ratelimit_free(pvg_srv_ratelimit *rl);
/* 1 allowed; 0 refused with *retry_after_s set. rate 0: unlimited. */
int pvg_srv_ratelimit_take(pvg_srv_ratelimit *rl, const char *key_id, double rate, double now,
                           double *retry_after_s);

/* ---- the model in service ---- */
typedef struct pvg_srv_catalog_entry {
    int in_catalog; /* the operator's catalog holds it (pvg_item.catalog): a public item */
    char *title;
    double price;      /* typical: the median of the recent prices (pvg_item); < 0: unknown */
    double last_price; /* < 0: unknown */
    /* whether the personalised answer may carry this item as written by
     * recs_json.c (its id and title valid UTF-8, its prices finite or
     * unknown): 0 not known yet (checked per answer), 1 yes, 2 no; set for
     * every item when the model is loaded (pvg_srv_catalog_json_mark), as
     * the catalogue view is immutable once the model is in service */
    unsigned char json_ok;
} pvg_srv_catalog_entry;

/* One entry of a released popular list: catalog data (public) and the
 * released noisy count (-1 when the mechanism releases none). */
typedef struct pvg_srv_popular_item {
    char *ext_id, *title;
    double price; /* < 0: unknown */
    int64_t noisy_count;
    int64_t row_id; /* catalog row id (the co-occurrence domain) */
} pvg_srv_popular_item;

/* A DP popular list as served: released for this model build, or (stale)
 * the last earlier release when this build's could not be made. Immutable
 * once published. */
typedef struct pvg_srv_popular {
    size_t n;
    pvg_srv_popular_item *items; /* best first */
    size_t n_fallback;
    int64_t *item_index; /* model item indices of the entries in the model, best first */
    double epsilon, delta;
    int64_t release_id;
    int64_t released_at; /* seconds since the epoch */
    int stale;           /* 1: an earlier release (this build's could not be made) */
    char mechanism[48];
    struct pvg_srv_popular *retired; /* the list this one replaced (requests may hold it) */
} pvg_srv_popular;

/* DP similar items (a co-occurrence release over the popular list's
 * items), with the catalog data of its domain. Immutable once published. */
typedef struct pvg_srv_similar {
    struct pvg_dp_cooc *rel;
    size_t n;                    /* domain size */
    pvg_srv_popular_item *items; /* the domain's catalog data, by row_id (any order) */
    int64_t release_id;
    int64_t released_at;
    int stale;
    struct pvg_srv_similar *retired; /* the release this one replaced */
} pvg_srv_similar;

typedef struct pvg_srv_cache pvg_srv_cache;
typedef struct pvg_srv_search pvg_srv_search; /* the search index in service (search_route.c) */

typedef struct pvg_srv_model {
    atomic_long refs;
    pvg_model *model;
    long generation;
    int64_t loaded_at;
    dev_t dev;
    ino_t ino;
    int64_t mtime_ns;
    off_t size;
    pvg_srv_catalog_entry *catalog;     /* per model item index */
    _Atomic(pvg_srv_popular *) popular; /* NULL until released; then immutable */
    _Atomic(pvg_srv_similar *) similar; /* NULL until released; then immutable */
    pthread_mutex_t popular_mu;         /* guards popular_error, similar_error, popular_tried */
    char popular_error[PVG_ERROR_TEXT_LEN + 8];
    char similar_error[PVG_ERROR_TEXT_LEN + 8];
    double popular_tried;
    pvg_srv_cache *cache;
    /* a DP-trained model (the server's DP model path) only: its popular
     * items that are in the operator's catalog (model item indices, best
     * first, at most PVG_SRV_DP_POPULAR) with their scores */
    int64_t *dp_popular;
    float *dp_popular_score;
    size_t n_dp_popular;
} pvg_srv_model;

#define PVG_SRV_DP_POPULAR 1000

/* What the DP-trained model's header records about its training: 1 and
 * *out filled when it is DP-trained, else 0. */
typedef struct pvg_srv_dp_info {
    double epsilon, delta, noise_multiplier;
    int max_items;
    char mechanism[PVG_DP_MECHANISM_MAX];
    const char *vocabulary; /* static: "catalog", "list", "selected" */
} pvg_srv_dp_info;
int pvg_srv_model_dp_info(const pvg_srv_model *m, pvg_srv_dp_info *out);

pvg_srv_model *pvg_srv_model_acquire(pvg_server *srv); /* NULL when none; release after */
/* The DP-trained model in service (the DP model path), NULL when none;
 * release after. */
pvg_srv_model *pvg_srv_dp_model_acquire(pvg_server *srv);
/* Why the model has no (fresh) popular list yet (copied into buf). */
void pvg_srv_model_popular_error(pvg_srv_model *m, char *buf, size_t len);
/* Why the model has no (fresh) DP similar items yet (copied into buf). */
void pvg_srv_model_similar_error(pvg_srv_model *m, char *buf, size_t len);
/* The catalog data of a similar release's domain item by row id; NULL when
 * outside the domain. */
const pvg_srv_popular_item *pvg_srv_similar_item(const pvg_srv_similar *s, int64_t row_id);
void pvg_srv_model_release(pvg_srv_model *m);

/* Recommendation cache of one model (user key + k -> items). */
pvg_srv_cache *pvg_srv_cache_new(size_t entries);
void pvg_srv_cache_free(pvg_srv_cache *c);
/* 1 hit (copies up to k into out, *n), 0 miss. */
int pvg_srv_cache_get(pvg_srv_cache *c, const unsigned char key[16], size_t k, pvg_scored_item *out,
                      size_t *n);
void pvg_srv_cache_put(pvg_srv_cache *c, const unsigned char key[16], size_t k,
                       const pvg_scored_item *in, size_t n);
/* The serialised answer for (key, k), kept beside the cached items: get
 * returns 1 with a new copy in *body (caller frees), 0 when none; put keeps
 * a copy when the slot holds the items of that (key, k). */
int pvg_srv_cache_get_body(pvg_srv_cache *c, const unsigned char key[16], size_t k, char **body,
                           size_t *len);
void pvg_srv_cache_put_body(pvg_srv_cache *c, const unsigned char key[16], size_t k,
                            const char *body, size_t len);

/* ---- audit writer (group commit) ---- */
typedef struct pvg_srv_audit_item pvg_srv_audit_item;
typedef struct pvg_srv_audit_writer {
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    pvg_srv_audit_item *head, *tail;
    long long enqueued, committed_upto; /* ticket numbers */
    int stop;
    pthread_t thread;
    int started;
    pvg_store *store;
    pvg_srv_metrics *metrics;
    void (*on_commit)(void *ctx); /* called by the writer thread after each committed batch */
    void *on_commit_ctx;
    /* called by the writer thread after it woke the asynchronous entries of
     * a batch (committed or failed), outside its lock */
    void (*on_group)(void *ctx);
    void *on_group_ctx;
    /* Deferred WAL checkpoints (audit_writer.c), under mu: the writer's
     * commits do not checkpoint; a checkpointer thread copies the WAL into
     * the database beside them (a side pass each wal_checkpoint_frames new
     * frames), and the writer itself makes the last short pass that lets the
     * WAL restart once it holds wal_reset_frames and at most wal_tail_frames
     * are left to copy (or it holds twice wal_reset_frames), or at once at
     * wal_max_frames (the bound). */
    pthread_t ckpt_thread;
    pthread_cond_t cv_ckpt;
    int ckpt_started, ckpt_stop;
    int ckpt_running;              /* a side pass was asked for or runs */
    int own_running;               /* the writer's own pass runs */
    long long ckpt_log, ckpt_done; /* the last side pass: WAL frames, frames copied (-1) */
    long long wal_checkpoint_frames, wal_reset_frames, wal_tail_frames, wal_max_frames;
    long long wal_side_passes, wal_own_passes, wal_peak_frames;
} pvg_srv_audit_writer;
/* The WAL thresholds the server uses (frames of 4 KiB pages) */
#define PVG_SRV_WAL_CHECKPOINT_FRAMES 1000 /* SQLite's automatic checkpoint's */
#define PVG_SRV_WAL_RESET_FRAMES 8000
#define PVG_SRV_WAL_TAIL_FRAMES 256
#define PVG_SRV_WAL_MAX_FRAMES 32000
int pvg_srv_audit_writer_start(pvg_srv_audit_writer *w, pvg_store *store, pvg_srv_metrics *m);
/* Makes `store` the audit writer's kind of connection: relaxed durability
 * (commits survive a crash of the process) and deferred checkpoints (the
 * writer's start, or a reopened connection before it becomes w->store). */
void pvg_srv_audit_store_prepare(pvg_store *store);
/* The other server connections: their commits checkpoint only past
 * PVG_SRV_WAL_MAX_FRAMES (the audit writer keeps the WAL below it), so a
 * write request does not copy the WAL the checkpointer copies anyway. */
void pvg_srv_store_prepare(pvg_store *store);
/* Appends and waits until committed. PVG_OK or the append error. */
pvg_status pvg_srv_audit_log(pvg_srv_audit_writer *w, const char *actor, const char *action,
                             const char *subject, const char *detail);
/* Appends without waiting: when the batch is committed (or failed), the
 * writer stores the result in *result, sets *done and calls
 * wake(wake_ctx) (outside its lock). Returns PVG_OK when queued. */
pvg_status pvg_srv_audit_log_async(pvg_srv_audit_writer *w, const char *actor, const char *action,
                                   const char *subject, const char *detail, int *done,
                                   pvg_status *result, void (*wake)(void *), void *wake_ctx);
void pvg_srv_audit_writer_stop(pvg_srv_audit_writer *w);

/* ---- access monitoring (alerts.c) ---- */
typedef struct pvg_srv_monitor pvg_srv_monitor;
/* Starts the monitor thread (srv->monitor; freed by pvg_srv_monitor_free
 * even when the start failed). */
pvg_status pvg_srv_monitor_start(pvg_server *srv, pvg_error *err);
void pvg_srv_monitor_stop(pvg_server *srv);
void pvg_srv_monitor_free(pvg_server *srv);
/* Queues a request observation (no-op without a monitor): the actor of an
 * authenticated request, or failed = 1 for a failed authentication; addr is
 * the client address (borrowed). */
void pvg_srv_monitor_observe(pvg_server *srv, const char *actor, const char *addr, int failed);
/* The audit writer's commit hook (ctx: the pvg_srv_monitor). */
void pvg_srv_monitor_kick(void *ctx);
/* The rate a credential may use: `rate`, or less while the monitor
 * throttles it. */
double pvg_srv_monitor_rate(pvg_server *srv, const char *key_id, double rate);
/* The monitor's /metrics lines into buf ("" without a monitor). */
void pvg_srv_monitor_metrics(pvg_server *srv, char *buf, size_t len);
/* The monitor thread's store connection, borrowed, with the thread kept off
 * it until pvg_srv_monitor_release (a key rotation reopens it); NULL (and
 * nothing held) without a monitor. */
pvg_store **pvg_srv_monitor_hold(pvg_server *srv);
void pvg_srv_monitor_release(pvg_server *srv);
/* Authenticates the request's Authorization: Bearer credential as every
 * non-public route does: failures counted, limited per client address and
 * observed by access monitoring; a suspended credential gets 403; then the
 * credential's own rate. 0: r->who and r->actor set; -1: an answer was
 * sent. Public routes that take an optional credential call it too. */
int pvg_srv_authenticate(pvg_srv_req *r);
void pvg_srv_h_alerts(pvg_srv_req *r);
void pvg_srv_h_alert_ack(pvg_srv_req *r);
void pvg_srv_h_cred_suspend(pvg_srv_req *r);
void pvg_srv_h_cred_resume(pvg_srv_req *r);
/* ---- time series of the dashboard (timeseries.c) ---- */
#define PVG_SRV_TS_LAT_BUCKETS 40 /* 50 us * 2^(b/2), b < 39; the last: beyond */
#define PVG_SRV_TS_BUILDS 64      /* model builds remembered */

/* One time bucket of a ring: its bucket number (seconds since the epoch /
 * step; -1 never used) and what happened in it. */
typedef struct pvg_srv_ts_slot {
    atomic_llong bucket;
    atomic_llong requests, client_errors, server_errors, events;
    atomic_llong lat[PVG_SRV_TS_LAT_BUCKETS];
} pvg_srv_ts_slot;

typedef struct pvg_srv_ts_ring {
    int step; /* seconds per slot */
    size_t n;
    pvg_srv_ts_slot *slots;
} pvg_srv_ts_ring;

/* A model build the server loaded, with the quality recorded for it. */
typedef struct pvg_srv_ts_build {
    long generation;
    int64_t built_at, loaded_at, evaluated_at;
    char type[24];
    long long items, users;
    int has_quality, k;
    double recall, ndcg;
} pvg_srv_ts_build;

typedef struct pvg_srv_timeseries {
    int ready;
    pvg_srv_ts_ring fine;   /* 10 s slots: the last hour */
    pvg_srv_ts_ring coarse; /* 1 min slots: the last day */
    pthread_mutex_t builds_mu;
    pvg_srv_ts_build builds[PVG_SRV_TS_BUILDS]; /* a ring of the last builds */
    size_t n_builds;                            /* builds recorded in all */
} pvg_srv_timeseries;

/* 0, or -1 out of memory. */
int pvg_srv_ts_init(pvg_srv_timeseries *ts);
void pvg_srv_ts_free(pvg_srv_timeseries *ts);
/* The request path: one answered request (status, seconds taken); events
 * accepted. Atomic increments only. */
void pvg_srv_ts_observe(pvg_srv_timeseries *ts, int status, double seconds);
void pvg_srv_ts_events(pvg_srv_timeseries *ts, long long n);
/* Records a model put in service (borrowed), with the quality of
 * <data_dir>/evaluation.json when that file is not older than the model. */
void pvg_srv_ts_model_loaded(pvg_srv_timeseries *ts, const pvg_srv_model *m, const char *data_dir);
/* The series of the last hour (day 0: 10 s points) or day (1 min points),
 * the budget spent per purpose at each point (from the ledger of s,
 * borrowed) and the model builds; new JSON object. */
json_t *pvg_srv_ts_json(pvg_srv_timeseries *ts, pvg_store *s, int day, int64_t started_at);
/* Latency bucket of a duration, a bucket's upper bound (INFINITY for the
 * last), and the q-quantile of a histogram in seconds (-1 when empty). */
int pvg_srv_ts_lat_bucket(double seconds);
double pvg_srv_ts_lat_bound(int b);
double pvg_srv_ts_quantile(const long long *h, double q);

/* Requests answered by one finisher pass at most (the rest wait for the
 * next pass); finisher threads at most. */
#define PVG_SRV_FINISH_MAX 256
#define PVG_SRV_FINISHERS_MAX 8

/* ---- the server ---- */
/* A connection libmicrohttpd started: its socket and where it is between
 * requests (http.c). FRESH: no request yet; BUSY: a request under way (from
 * its request line read to its answer sent); IDLE: kept alive after an
 * answer. idle_seq counts the answers (one more each time it becomes IDLE);
 * seen and shut are the stop's (close_idle, under conns_mu): the idle_seq
 * of its last sweep, and whether it shut the reads. */
enum { PVG_SRV_CONN_FRESH, PVG_SRV_CONN_BUSY, PVG_SRV_CONN_IDLE };
typedef struct pvg_srv_conn {
    struct pvg_srv_conn *prev, *next;
    int fd;
    atomic_int state;
    atomic_uint idle_seq;
    unsigned seen;
    int shut;
} pvg_srv_conn;

/* at most this many connections taken from the backlog by a stop */
#define PVG_SRV_HANDED_MAX 4096

/* Kept request-body buffers (body_pool.c): at most PVG_SRV_BODY_POOL_MAX,
 * each of at least PVG_SRV_BODY_POOL_MIN bytes and at most max_body_bytes + 1,
 * together at most PVG_SRV_BODY_POOL_BYTES (a burst of large bodies leaves the
 * server holding no more than that after it). */
#define PVG_SRV_BODY_POOL_MIN ((size_t)64 * 1024)
#define PVG_SRV_BODY_POOL_MAX 64
#define PVG_SRV_BODY_POOL_BYTES ((size_t)256 << 20)
typedef struct pvg_srv_body_pool {
    pthread_mutex_t mu;
    char *buf[PVG_SRV_BODY_POOL_MAX];
    size_t cap[PVG_SRV_BODY_POOL_MAX];
    size_t bytes; /* the sum of cap[0..n) */
    int n, init;
} pvg_srv_body_pool;

struct pvg_server {
    pvg_server_options opt;
    char *data_dir, *bind, *model_path, *dp_model_path, *web_dir, *dataset, *openapi_path;
    struct MHD_Daemon *daemon;
    int port;
    int64_t started_at;

    /* store pool: one connection per worker, checked out per request */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    pvg_store **stores;
    int n_stores, n_free;
    int *free_idx;

    /* model */
    pthread_mutex_t model_mu;  /* guards `model` pointer swaps */
    pthread_mutex_t reload_mu; /* one reload at a time */
    pvg_srv_model *model;
    long generation;
    pvg_store *reload_store; /* the reload thread's own connection */
    pthread_t reload_thread;
    int reload_started;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    int stopping; /* guarded by stop_mu */
    int stopped;
    char last_reload_error[320];
    atomic_llong model_checked_ns; /* CLOCK_MONOTONIC of the last on-request file check */
    /* the DP-trained model (guarded like `model`; its reloads under reload_mu) */
    pvg_srv_model *dp_model;
    long dp_generation;
    char last_dp_reload_error[PVG_ERROR_TEXT_LEN + 64]; /* guarded by model_mu */
    /* the DP model file last refused (not retried until it changes) */
    int dp_refused;
    pvg_status dp_refused_status;
    dev_t dp_refused_dev;
    ino_t dp_refused_ino;
    int64_t dp_refused_mtime_ns;
    off_t dp_refused_size;

    pvg_srv_audit_writer audit;
    struct pvg_srv_authcache *authcache;
    pvg_store *audit_store;
    pvg_srv_metrics metrics;
    pvg_srv_timeseries ts;
    pthread_mutex_t rotate_mu; /* one master-key rotation at a time */
    pvg_srv_ratelimit rl;
    struct pvg_assistant *assistant; /* the shopping assistant (assist_route.c) */
    atomic_long inflight;
    atomic_int draining;
    /* the stop's hand-over (http.c): sockets the stop took from the listen
     * backlog and gave to libmicrohttpd, which no worker has started yet
     * (libmicrohttpd counts a connection only once its worker starts it) */
    pthread_mutex_t handed_mu;
    atomic_int n_handed;
    struct {
        int fd;
        unsigned long long ino; /* the socket's inode: tells a reused number */
    } handed[PVG_SRV_HANDED_MAX];
    /* the connections libmicrohttpd started (http.c, on_connection), so the
     * stop can close the idle keep-alive ones at once */
    pthread_mutex_t conns_mu;
    struct pvg_srv_conn *conns;
    pvg_srv_monitor *monitor; /* NULL when monitoring is off */
    /* deferred recommendations: suspended requests whose entries are
     * committed wait in the ready queue for a finisher thread */
    pthread_mutex_t fin_mu;
    pthread_cond_t fin_cv, fin_idle_cv;
    struct pvg_srv_req *ready_head, *ready_tail;
    struct pvg_srv_req *group_head, *group_tail; /* the writer thread's group being woken */
    long fin_suspended;                          /* suspended, or resumed and not yet answered */
    int fin_closed;                              /* stopping: no new suspension */
    int fin_stop, n_fin, fin_init;
    pthread_t fin_threads[PVG_SRV_FINISHERS_MAX];
    pvg_srv_search *search;
    pvg_srv_body_pool bodies; /* body_pool.c */
};

/* ---- kept request-body buffers (body_pool.c) ---- */
/* Starts and ends srv's pool (the end frees every kept buffer; safe on a pool
 * never started). */
void pvg_srv_body_pool_init(pvg_server *srv);
void pvg_srv_body_pool_free(pvg_server *srv);
/* A kept buffer of at least need bytes (the smallest such) with its size in
 * *cap, taken out of the pool; NULL when need is below PVG_SRV_BODY_POOL_MIN
 * or none fits. Every byte an earlier body wrote in it was wiped. */
char *pvg_srv_body_take(pvg_server *srv, size_t need, size_t *cap);
/* A new body buffer of cap bytes, above PVG_SRV_BODY_HUGE_MIN: a mapping of
 * its own, 2 MiB-aligned and advised as huge pages, whose pages are taken
 * only as they are written (release with pvg_srv_body_give or
 * pvg_srv_body_release); NULL up to that size (the caller allocates with
 * malloc) or out of memory. */
#define PVG_SRV_BODY_HUGE_MIN ((size_t)1 << 20)
char *pvg_srv_body_new(size_t cap);
/* Grows a body buffer b of cap bytes, above PVG_SRV_BODY_HUGE_MIN (a mapping,
 * pvg_srv_body_new), to new_cap bytes with mremap: its pages move to the
 * returned address (maybe b's) and the bytes are not copied; b is no longer
 * valid. NULL (b unchanged and still valid) when b is not such a buffer,
 * new_cap is not larger, or the kernel refuses. */
char *pvg_srv_body_grow(char *b, size_t cap, size_t new_cap);
/* Frees a body buffer b of cap bytes without keeping it: a mapping
 * (pvg_srv_body_new) above PVG_SRV_BODY_HUGE_MIN, else malloc's. b may be
 * NULL. */
void pvg_srv_body_release(char *b, size_t cap);
/* Ends a body buffer b of cap bytes whose first `used` were written: wiped and
 * kept when its size suits the pool (a full pool keeps the larger buffers),
 * else freed, wiped first unless it is a mapping (whose pages the kernel
 * zeroes). b may be NULL. */
void pvg_srv_body_give(pvg_server *srv, char *b, size_t cap, size_t used);

pvg_store *pvg_srv_store_get(pvg_server *srv);
void pvg_srv_store_put(pvg_server *srv, pvg_store *s);
/* Rotates the store's master key (pvg_store_keys_rotate) from inside the
 * running server: waits until it holds every other connection of the pool,
 * the model loader's and an idle audit writer's (requests meanwhile wait for
 * a connection), rotates on `mine` (the request's connection, borrowed),
 * then reopens every other connection so all hold the new key. One at a
 * time: PVG_ERR_BUSY when another rotation is under way. */
pvg_status pvg_srv_keys_rotate(pvg_server *srv, pvg_store *mine, long long *rewrapped,
                               pvg_error *err) PVG_WARN_UNUSED;

/* The pages that run the browser federated client (web/fl.html, and the shop
 * page's on-device training): the only pages whose Content-Security-Policy
 * allows WebAssembly compilation ('wasm-unsafe-eval'). */
#define PVG_SRV_WASM_PAGE "/static/fl.html"
#define PVG_SRV_WASM_SHOP "/shop"

/* ---- deferred recommendations (http.c, routes.c) ---- */
typedef struct pvg_srv_rec_async pvg_srv_rec_async;
/* From a handler (the connection's thread): suspends r's connection so its
 * answer can be given later by a finisher; 0, or -1 when the server is
 * stopping (nothing suspended: answer synchronously). */
int pvg_srv_req_suspend(pvg_srv_req *r);
/* From the handler that suspended r, when it answered r itself after all:
 * resumes the connection at once (the answer in r leaves). */
void pvg_srv_req_resume_now(pvg_srv_req *r);
/* From the audit writer's wake (its thread only): r's entry is committed
 * (or failed); r joins its commit group, which the writer's on_group then
 * hands to the finishers whole. */
void pvg_srv_req_ready(pvg_srv_req *r);
/* The answers of n ready requests (routes.c): one call of the gate's
 * finish (allowed shoppers scored as one batch), each answer set in its
 * request; n <= PVG_SRV_FINISH_MAX. The caller resumes them. */
void pvg_srv_recommend_finish(pvg_srv_req *const *rs, size_t n);
/* Federated long polls (fl_route.c): a stopping server ends every parked
 * GET /v1/fl/state?wait= at once (answered with the current state), so its
 * connections drain without waiting out the polls. */
void pvg_srv_stop_fl_waits(pvg_server *srv);

/* The long poll's query value wait = "VERSION.ROUND.PHASE.MS"
 * (docs/fl-protocol.md): decimal fields without leading zeros, version 1,
 * phase 0..7, round and ms within 64 and 32 bits, nothing after MS. v is
 * borrowed and NUL-terminated. 0 with the fields set; -1 with *at the byte
 * offset of the fault (at most strlen(v)), *expected what was expected there
 * and *then the separator that had to follow it (static strings). */
int pvg_srv_fl_wait_parse(const char *v, uint64_t *round, int *phase, uint32_t *ms, size_t *at,
                          const char **expected, const char **then);

/* ---- request context ---- */
struct pvg_srv_req {
    pvg_server *srv;
    struct MHD_Connection *conn;
    const char *method;
    const char *url;
    char *body;
    size_t body_len, body_cap;
    size_t body_declared; /* its Content-Length (within the cap), or 0 */
    int too_large;
    int route;
    char params[PVG_SRV_MAX_PARAMS][256];
    pvg_principal who;
    char actor[48];   /* "key:<id>", "token:<id>" or "public" */
    pvg_store *store; /* checked out lazily by pvg_srv_req_store */
    double t0;
    /* the answer */
    int status;
    char *out; /* body, malloc'd */
    size_t out_len;
    /* or a shared, read-only body (out NULL): out_shared (out_len bytes) stays valid
       until out_release(out_ref), which the response calls once it is done with it
       (pvg_srv_reply_shared) */
    const char *out_shared;
    void (*out_release)(void *ref);
    void *out_ref;
    const char *ctype;
    char retry_after[16];
    char allow[64];
    int gate_audit_failed; /* the access gate's audit entry could not be written */
    /* a recommendation through the deferred gate (routes.c, http.c) */
    int async; /* the connection's thread only: 1 while suspended, 2 from the resume until
                  the answer has left (on_completed) */
    struct pvg_srv_rec_async *rec; /* what the request holds meanwhile (routes.c) */
    pvg_access_rec_pending *pend;  /* the gate's pending answer, until finished */
    int audit_done;                /* the writer's flags for the entry */
    pvg_status audit_result;
    struct pvg_srv_req *ready_next; /* the finishers' queue */
};

/* ---- the access gate (access_sink.c) ---- */
/* The personalised recommendation answer for user (items[0..n) of m,
 * m's generation) as one JSON text, byte for byte what h_recommend built
 * with jansson (json_dumps, JSON_COMPACT | JSON_REAL_PRECISION(9)); new
 * (free), *len its length. NULL when out of memory or when a string is not
 * valid UTF-8 or a price not finite (jansson leaves such a key out: the
 * caller builds the answer with jansson then). */
char *pvg_srv_recs_json(const pvg_srv_model *m, const char *user, const pvg_scored_item *items,
                        size_t n, size_t *len);
/* Sets json_ok of every catalogue entry of m (model and catalogue loaded). */
void pvg_srv_catalog_json_mark(pvg_srv_model *m);
/* v as jansson writes a real with precision 9 ("%.9g", ".0" when that
 * reads as an integer, no '+' or leading zeros in the exponent) into out,
 * NUL-terminated; its length. 0 (out "") when v is not finite, which JSON
 * cannot carry (jansson's json_real refuses it too). */
size_t pvg_srv_real9(double v, char out[40]);

/* Fills g for request r: its store, its actor, audit entries through the
 * group-commit writer (waiting for the commit). */
void pvg_srv_access_init(pvg_srv_req *r, pvg_access *g);
/* The deferred gate's audit writer (pvg_access_audit_async_fn; ctx: the
 * pvg_srv_req, which must be suspended by pvg_srv_req_suspend): queues the
 * entry on the group-commit writer; after the commit the writer tells the
 * gate (pvg_access_rec_committed), marks a failure for the 503 answer and
 * hands the request to the finishers (pvg_srv_req_ready). */
pvg_status pvg_srv_access_enqueue(void *ctx, const pvg_audit_record *rec, pvg_access_rec_pending *p,
                                  pvg_error *err);
/* Answers a gate failure: 503 when the audit log could not be written, 404
 * not found, 403 no consent, else as pvg_srv_reply_status. */
void pvg_srv_reply_access(pvg_srv_req *r, const char *what, pvg_status st, const pvg_error *err);

/* ---- credential cache (auth results for a short time, keyed by id) ---- */
typedef struct pvg_srv_authcache pvg_srv_authcache;
pvg_srv_authcache *pvg_srv_authcache_new(double ttl_s);
void pvg_srv_authcache_free(pvg_srv_authcache *c);
void pvg_srv_authcache_clear(pvg_srv_authcache *c);
/* pvg_auth_check through the cache. */
pvg_status pvg_srv_auth_check(pvg_server *srv, pvg_store *s, const char *cred, pvg_principal *out,
                              pvg_error *err);

pvg_store *pvg_srv_req_store(pvg_srv_req *r);
const char *pvg_srv_req_query(pvg_srv_req *r, const char *name);
/* The decoded value of query parameter name (borrowed; *out NULL when it is
 * absent or has no value), strictly: a parameter given more than once, or
 * whose value holds a NUL byte (%00, which would cut it short), gets a 400
 * naming it, and -1 is returned; else 0. */
int pvg_srv_req_query_one(pvg_srv_req *r, const char *name, const char **out);
/* Sets a JSON answer (steals j). */
void pvg_srv_reply_json(pvg_srv_req *r, int status, json_t *j);
/* Answers status with a body that is not copied: data (len bytes, read-only)
 * must stay valid until release(ref), which is called exactly once: by the
 * HTTP response when it has sent it (or dropped it), or here when a later
 * reply replaces it. */
void pvg_srv_reply_shared(pvg_srv_req *r, int status, const char *ctype, const void *data,
                          size_t len, void (*release)(void *ref), void *ref);
/* Sets {"error": code, "message": msg} */
void pvg_srv_reply_error(pvg_srv_req *r, int status, const char *code, const char *fmt, ...)
    PVG_PRINTF(4, 5);
void pvg_srv_reply_status(pvg_srv_req *r, const char *what, pvg_status st, const pvg_error *err);
/* Parses the body as JSON with the depth cap; on failure sets a 400 with
 * the byte position and returns NULL. */
json_t *pvg_srv_req_json(pvg_srv_req *r);

/* Checks the JSON nesting depth of text; returns -1 when within max_depth,
 * else the byte offset where the limit was exceeded. */
long long pvg_srv_json_depth_exceeded(const char *text, size_t len, int max_depth);

double pvg_srv_now(void);

/* The assistant's handlers (assist_route.c): POST /v1/assist (anonymous),
 * POST /v1/users/{id}/assist (the shopper), GET /v1/users/{id}/conversations. */
void pvg_srv_h_assist(pvg_srv_req *r);
void pvg_srv_h_user_assist(pvg_srv_req *r);
void pvg_srv_h_conversations(pvg_srv_req *r);

/* Handlers (routes.c) and static pages (web.c). */
void pvg_srv_serve_static(pvg_srv_req *r, const char *name);

/* search_route.c: the index built from the catalog at start and kept
 * current by its own thread (init), stopped (shutdown; idempotent) and
 * freed (free); the GET /v1/search handler; builds so far. */
pvg_status pvg_srv_search_init(pvg_server *srv, pvg_error *err);
void pvg_srv_search_shutdown(pvg_server *srv);
void pvg_srv_search_free(pvg_server *srv);
void pvg_srv_h_search(pvg_srv_req *r);
long long pvg_srv_search_builds(const pvg_server *srv);
/* The index builder's store connection, borrowed, with the builder kept off
 * it until pvg_srv_search_release (a key rotation reopens it); NULL (and
 * nothing held) without a search index. */
pvg_store **pvg_srv_search_hold(pvg_server *srv);
void pvg_srv_search_release(pvg_server *srv);

/* model_holder.c */
pvg_status pvg_srv_model_init(pvg_server *srv, pvg_error *err);
void pvg_srv_model_shutdown(pvg_server *srv);

#endif
