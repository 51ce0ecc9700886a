/*
 * privguide/server.h - the shopping-guide HTTP service: JSON API under /v1
 * (events, recommendations, similar and popular items, the shopper's
 * export, erasure and consent), /healthz, /metrics, /v1/openapi.json and
 * the three web pages, on libmicrohttpd with a thread pool.
 *
 * Every route is declared once in a table (src/server/routes.c) with the
 * roles allowed to call it; docs/openapi.json documents the same table and
 * is checked against it by the tests. Accesses to personal data are written
 * to the audit log (audit.h) before the answer is sent. The model file is
 * watched and reloaded atomically: requests in flight keep the model they
 * started with.
 */
#ifndef PRIVGUIDE_SERVER_H
#define PRIVGUIDE_SERVER_H

#include <privguide/common.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

typedef struct pvg_server pvg_server;

typedef struct pvg_server_options {
    const char *data_dir;      /* required: the store to serve */
    const char *bind;          /* IPv4 address; NULL: "127.0.0.1" */
    int port;                  /* 0: an ephemeral port (see pvg_server_port) */
    const char *model_path;    /* NULL: <data_dir>/model.pvgm; may not exist yet */
    const char *dp_model_path; /* the DP-trained model that serves people other than the
                                  shopper themself (similar items, popular, the list of a
                                  shopper without personalisation consent); NULL:
                                  <data_dir>/model-dp.pvgm. May not exist (then the DP
                                  releases serve); a file whose header records no DP
                                  training is refused (PVG_ERR_INVALID) */
    const char *web_dir;       /* directory of the pages; NULL: pages not served */
    const char *openapi_path;  /* the OpenAPI document served at /v1/openapi.json;
                                  NULL: <web_dir>/../openapi.json when readable (the
                                  installed share/privguide/ layout), else
                                  <web_dir>/../../../docs/openapi.json (the source
                                  tree's docs/openapi.json) */
    int threads;               /* HTTP worker threads; 0: pvg_server_default_threads() */
    size_t max_body_bytes;     /* 0: 1 MiB */
    int max_json_depth;        /* 0: 32 */
    int timeout_seconds;       /* idle connection timeout; 0: 15 */
    int reload_ms;             /* model file check period; 0: 1000 */
    const char *dataset;       /* privacy-budget ledger of DP releases; NULL: "default" */
    double popular_epsilon;    /* epsilon of the DP popular list per model build; 0: 1.0 */
    int popular_k;             /* length of the DP popular list; 0: 20 */
    int cache_entries;         /* recommendation cache entries per model; 0: 65536; <0: none */
    double auth_failure_rate;  /* failed authentications allowed per second per client
                                  address (burst: twice that), then 429; 0: 10; <0: no limit */
    int allow_insecure_rng;    /* tests only: deterministic DP noise */
    uint64_t insecure_seed;    /* seed when allow_insecure_rng */

    /* Access monitoring (monitor.h, docs/monitor.md). alert_url: POST each
     * alert's JSON to this http://host[:port]/path (NULL: none).
     * monitor_off: 1 for no monitoring (tests and measurements). */
    const char *alert_url;
    int monitor_off;
    /* The search synonyms file (docs/search.md). NULL: <web_dir>/../synonyms.txt
     * when readable (installed), else <web_dir>/../../../data/synonyms.txt (the
     * source tree's), else none; "": none. */
    const char *synonyms_path;
    /* The assistant's optional language model (assistant.h,
     * pvg_assist_llm_options; borrowed for the call). NULL: none. */
    const struct pvg_assist_llm_options *assist_llm;
    /* Federated training (fl_net.h, docs/fl-protocol.md): the round
     * coordinator behind /v1/fl/ (borrowed; it must outlive the server).
     * NULL: those routes answer 404. */
    struct pvg_fl_coord *fl;
    /* The public item list the coordinator trains over (ids in its order: an
     * update's item index is the position here; borrowed, must outlive the
     * server). GET /v1/fl/items serves it to the shoppers' clients (the shop
     * page's on-device training). NULL: that route answers 404. */
    const char *const *fl_items;
    size_t fl_n_items;
} pvg_server_options;

/* Opens the store (one connection per worker), loads the model when the
 * file exists, starts listening. On success *out is new (pvg_server_free)
 * and requests are being served. Errors: PVG_ERR_INVALID (bad option),
 * those of pvg_store_open and pvg_model_load_store, PVG_ERR_BUSY (the port
 * is already in use: another server listens there; never shared),
 * PVG_ERR_IO (cannot bind); err names the address and port. */
pvg_status pvg_server_start(const pvg_server_options *opt, pvg_server **out,
                            pvg_error *err) PVG_WARN_UNUSED;

/* The number of HTTP worker threads a server starts when
 * pvg_server_options.threads is 0: one per online processor, at least 2
 * and at most 16. A recommendation request does not hold its thread while
 * its audit entry commits and it is scored (it is suspended and resumed), so
 * more threads than cores only add switches: on 2 cores shared with other
 * work, 2 threads answered uncached recommendations 1.2-1.6x faster than 4
 * (two pairs); on an idle machine the two were within run-to-run spread.
 * Routes that wait for their audit entry on the thread (search, export, the
 * assistant) may want more (--threads). */
int pvg_server_default_threads(void);

/* The TCP port being listened on. */
int pvg_server_port(const pvg_server *srv);

/* Stops accepting connections, lets requests in flight finish (at most
 * drain_ms milliseconds), flushes the audit log and stops the workers.
 * Every connection the kernel completed before the call, taken by a worker
 * or still in the listen backlog, is answered in full (Connection: close);
 * later connections are refused (docs/api.md, the drain's contract); only
 * what drain_ms cuts off is closed unanswered. Idempotent. Thread-safe
 * against the workers (call it from one thread). */
pvg_status pvg_server_stop(pvg_server *srv, int drain_ms, pvg_error *err) PVG_WARN_UNUSED;

/* Stops (if needed, with a 5 s drain) and frees. NULL ok. */
void pvg_server_free(pvg_server *srv);

/* Checks the model file and the DP model file now and reloads each that
 * changed (the reload thread does this every reload_ms). Returns PVG_OK
 * when both are up to date, or the first load error (the previous model of
 * that path stays in service). A DP model file whose header records no DP
 * training is refused with PVG_ERR_INVALID. */
pvg_status pvg_server_reload_model(pvg_server *srv, pvg_error *err) PVG_WARN_UNUSED;

/* The model generation in service (0: none; +1 on every reload). */
long pvg_server_model_generation(const pvg_server *srv);

/* The default model path of a data dir: "<data_dir>/model.pvgm" into buf. */
const char *pvg_server_default_model_path(const char *data_dir, char *buf, size_t len);

/* The DP model generation in service (0: none; +1 on every reload of the
 * DP model file). */
long pvg_server_dp_model_generation(const pvg_server *srv);

/* The default DP model path of a data dir: "<data_dir>/model-dp.pvgm" into
 * buf. */
const char *pvg_server_default_dp_model_path(const char *data_dir, char *buf, size_t len);

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
