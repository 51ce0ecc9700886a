/*
 * serve.c - benchmark of the HTTP service: a synthetic 100k-item, 64-factor
 * iALS model trained from the store (synthetic purchases put through
 * pvg_store_event_put) served by an in-process privguide server on 127.0.0.1, loaded
 * with wrk (2 threads, 64 connections) on GET /v1/users/{id}/recommendations
 * ?k=10, cycling over consenting users known to the model, each request with
 * that shopper's own token (an operator key reading a thousand shoppers'
 * lists is what access monitoring flags as scraping). Every answer is
 * personalised and audited (group-committed hash-chained log). Two runs:
 * with the per-model recommendation cache (after a warm-up pass) and
 * without it (every request scores all 100k items). With monitor_reps > 0,
 * then that many pairs of cached runs with access monitoring on and off
 * (alternating; a fresh server and warm-up each): the median requests/s of
 * each and the cost in percent, and the alerts the traffic raised (0: the
 * bench's traffic is normal). Prints one JSON object.
 *
 * Usage: bench_serve [seconds=10] [items=100000] [factors=64] [users=20000]
 *                    [request_users=1000] [server_threads=4] [warmup_seconds=10]
 *                    [monitor_reps=0]
 * Needs wrk on PATH. The machine may be shared: the JSON has the load.
 */
#include "server/server_internal.h"

#include <privguide/auth.h>
#include <privguide/ledger.h>
#include <privguide/model.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "bench_serve: " __VA_ARGS__);                                              \
        fprintf(stderr, "\n");                                                                     \
        exit(1);                                                                                   \
    } while (0)

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double t[16];
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, dbl_cmp);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/* CPU seconds of this process (the server's threads: wrk runs apart). */
static double process_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds of the server's monitor thread (its /metrics line). */
static double monitor_cpu(pvg_server *srv)
{
    char metrics[4096];
    pvg_srv_monitor_metrics(srv, metrics, sizeof metrics);
    static const char name[] = "\nprivguide_monitor_cpu_seconds_total ";
    const char *q = strstr(metrics, name);
    return q ? atof(q + sizeof name - 1) : 0;
}

/* Runs wrk; the Lua script's done() prints one JSON line, copied to out. */
static int run_wrk(const char *lua, int port, int seconds, char *out, size_t len)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "wrk -t2 -c64 -d%ds --timeout 5s -s '%s' http://127.0.0.1:%d/ 2>&1 | grep '^{'",
             seconds, lua, port);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    out[0] = 0;
    if (!fgets(out, (int)len, p)) out[0] = 0;
    int rc = pclose(p);
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = 0;
    return (rc == 0 && n) ? 0 : -1;
}

int main(int argc, char **argv)
{
    int seconds = argc > 1 ? atoi(argv[1]) : 10;
    long n_items = argc > 2 ? atol(argv[2]) : 100000;
    int factors = argc > 3 ? atoi(argv[3]) : 64;
    long n_users = argc > 4 ? atol(argv[4]) : 20000;
    long req_users = argc > 5 ? atol(argv[5]) : 1000;
    int server_threads = argc > 6 ? atoi(argv[6]) : 4;
    int warm_s = argc > 7 ? atoi(argv[7]) : 10;
    int mon_reps = argc > 8 ? atoi(argv[8]) : 0;
    if (warm_s < 1 || server_threads < 1 || server_threads > 256 || seconds < 1 || n_items < 100 ||
        factors < 1 || n_users < 10 || req_users < 1 || req_users > n_users)
        DIE("usage: bench_serve [seconds] [items] [factors] [users] [request_users]");
    if (system("command -v wrk >/dev/null 2>&1") != 0) {
        printf(
            "{\"bench\":\"serve\",\"skipped\":\"wrk is not installed (apt-get install wrk)\"}\n");
        return 0;
    }
    char dir[] = "/tmp/pvg_bench_serve_XXXXXX";
    if (!mkdtemp(dir)) DIE("mkdtemp failed");
    char dd[128], mp[160], lua[160], cmd[300];
    snprintf(dd, sizeof dd, "%s/data", dir);
    snprintf(mp, sizeof mp, "%s/model.pvgm", dd);
    snprintf(lua, sizeof lua, "%s/recs.lua", dir);
    pvg_error err;
    if (pvg_store_init(dd, NULL, &err) != PVG_OK) DIE("init: %s", err.text);
    pvg_store *s = NULL;
    if (pvg_store_open(dd, &s, &err) != PVG_OK) DIE("open: %s", err.text);

    /* catalog */
    double t0 = now_s();
    if (pvg_store_begin(s, &err) != PVG_OK) DIE("begin: %s", err.text);
    for (long i = 0; i < n_items; i++) {
        char id[32], title[64];
        snprintf(id, sizeof id, "I%06ld", i);
        snprintf(title, sizeof title, "Synthetic item %ld", i);
        pvg_item it = {0, id, title, NULL, 1.0 + (double)(i % 500) / 10.0, NULL, 1, -1};
        if (pvg_store_item_put(s, &it, NULL, &err) != PVG_OK) DIE("item: %s", err.text);
    }
    if (pvg_store_commit(s, &err) != PVG_OK) DIE("commit: %s", err.text);

    /* interactions through the store (the server serves only models trained
     * from its store): every item at least once, the rest skewed to popular
     * items */
    long per_user = (n_items + n_users - 1) / n_users + 8;
    int64_t ts = (int64_t)time(NULL) - 86400;
    if (pvg_store_begin(s, &err) != PVG_OK) DIE("begin: %s", err.text);
    for (long u = 0; u < n_users; u++) {
        char user[32];
        snprintf(user, sizeof user, "U%ld", u);
        for (long j = 0; j < per_user; j++) {
            long item;
            if (j < per_user - 8)
                item = (u * (per_user - 8) + j) % n_items;
            else {
                double x = (double)(rnd() >> 11) / 9007199254740992.0;
                item = (long)((double)n_items * x * x * x); /* skew */
            }
            char id[32];
            snprintf(id, sizeof id, "I%06ld", item);
            pvg_event e = {0};
            e.type = PVG_EVENT_PURCHASE;
            e.item = id;
            e.ts = ts + j;
            int outcome;
            if (pvg_store_event_put(s, user, &e, NULL, &outcome, &err) != PVG_OK)
                DIE("event: %s", err.text);
        }
        if (u % 5000 == 4999 &&
            (pvg_store_commit(s, &err) != PVG_OK || pvg_store_begin(s, &err) != PVG_OK))
            DIE("commit: %s", err.text);
    }
    if (pvg_store_commit(s, &err) != PVG_OK) DIE("commit: %s", err.text);
    pvg_dataset *ds = NULL;
    if (pvg_dataset_load_store(s, NULL, &ds, NULL, &err) != PVG_OK) DIE("dataset: %s", err.text);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_IALS, &p);
    p.factors = factors;
    p.epochs = 2;
    p.threads = 2;
    pvg_model *m = NULL;
    double t1 = now_s();
    if (pvg_model_train(ds, &p, &m, NULL, &err) != PVG_OK) DIE("train: %s", err.text);
    double train_s = now_s() - t1;
    if (pvg_model_save(m, mp, &err) != PVG_OK) DIE("save: %s", err.text);
    size_t model_items = pvg_model_n_items(m), model_users = pvg_model_n_users(m);
    pvg_model_free(m);
    pvg_dataset_free(ds);

    /* the requesting users consent to personalisation */
    if (pvg_store_begin(s, &err) != PVG_OK) DIE("begin: %s", err.text);
    for (long u = 0; u < req_users; u++) {
        char user[32];
        snprintf(user, sizeof user, "U%ld", u);
        pvg_consent c = {1, 1};
        if (pvg_store_consent_set(s, user, &c, &err) != PVG_OK) DIE("consent: %s", err.text);
    }
    if (pvg_store_commit(s, &err) != PVG_OK) DIE("commit: %s", err.text);
    if (pvg_ledger_set_budget(s, "default", 10.0, 1e-6, &err) != PVG_OK)
        DIE("budget: %s", err.text);
    FILE *f = fopen(lua, "w");
    if (!f) DIE("cannot write %s", lua);
    fprintf(f, "local tok = {\n");
    for (long u = 0; u < req_users; u++) { /* each shopper's own token, a day long */
        char user[32], *tok = NULL;
        snprintf(user, sizeof user, "U%ld", u);
        if (pvg_auth_token_issue(s, user, 86400, 0, &tok, NULL, &err) != PVG_OK)
            DIE("token: %s", err.text);
        fprintf(f, "  \"Bearer %s\",\n", tok);
        pvg_auth_credential_free(tok);
    }
    fprintf(f, "}\n");
    pvg_store_free(s);
    double setup_s = now_s() - t0;
    fprintf(
        f,
        "local n = %ld\n"
        "local i = 0\n"
        "function setup(thread) thread:set(\"id\", 0) end\n"
        "function init(args) i = math.random(0, n - 1) end\n"
        "function request()\n"
        "  i = (i + 1) %% n\n"
        "  return wrk.format(\"GET\", \"/v1/users/U\" .. i .. \"/recommendations?k=10\",\n"
        "                    { [\"Authorization\"] = tok[i + 1] })\n"
        "end\n"
        "function done(summary, latency, requests)\n"
        "  local errs = summary.errors.connect + summary.errors.read + summary.errors.write +\n"
        "               summary.errors.timeout + summary.errors.status\n"
        "  io.write(string.format('{\"requests\":%%d,\"duration_s\":%%.3f,\"requests_per_s\":%%.1f,"
        "\"p50_ms\":%%.3f,\"p90_ms\":%%.3f,\"p99_ms\":%%.3f,\"max_ms\":%%.3f,\"errors\":%%d,"
        "\"non_2xx\":%%d}\\n',\n"
        "    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / "
        "1e6),\n"
        "    latency:percentile(50) / 1000, latency:percentile(90) / 1000,\n"
        "    latency:percentile(99) / 1000, latency.max / 1000, errs, summary.errors.status))\n"
        "end\n",
        req_users);
    fclose(f);

    char cached[512] = "", uncached[512] = "";
    for (int pass = 0; pass < 2; pass++) {
        pvg_server_options o;
        memset(&o, 0, sizeof o);
        o.data_dir = dd;
        o.threads = server_threads;
        o.cache_entries = pass == 0 ? 0 : -1;
        pvg_server *srv = NULL;
        if (pvg_server_start(&o, &srv, &err) != PVG_OK) DIE("start: %s", err.text);
        int port = pvg_server_port(srv);
        char warm[512];
        /* warm-up: long enough for every requesting user to be scored once */
        if (pass == 0 && run_wrk(lua, port, warm_s, warm, sizeof warm) != 0)
            DIE("wrk warm-up failed");
        char *out = pass == 0 ? cached : uncached;
        long long h0 = atomic_load(&srv->metrics.cache_hits);
        long long p0 = atomic_load(&srv->metrics.recs_personal);
        if (run_wrk(lua, port, seconds, out, 400) != 0) DIE("wrk failed");
        long long hits = atomic_load(&srv->metrics.cache_hits) - h0;
        long long pers = atomic_load(&srv->metrics.recs_personal) - p0;
        size_t ol = strlen(out);
        if (ol && out[ol - 1] == '}')
            snprintf(out + ol - 1, 512 - (ol - 1), ",\"personalized\":%lld,\"cache_hits\":%lld}",
                     pers, hits);
        pvg_server_free(srv);
    }
    /* access monitoring's cost: cached runs with it on and off, alternating */
    char mon[1024] = "null";
    if (mon_reps > 0) {
        double on[16], off[16];
        long long alerts = 0;
        double mon_cpu = 0, proc_cpu = 0;
        if (mon_reps > 16) mon_reps = 16;
        for (int rep = 0; rep < mon_reps; rep++)
            for (int monitor = 1; monitor >= 0; monitor--) {
                pvg_server_options o;
                memset(&o, 0, sizeof o);
                o.data_dir = dd;
                o.threads = server_threads;
                o.monitor_off = !monitor;
                pvg_server *srv = NULL;
                if (pvg_server_start(&o, &srv, &err) != PVG_OK) DIE("start: %s", err.text);
                int port = pvg_server_port(srv);
                char line[512];
                if (run_wrk(lua, port, warm_s, line, sizeof line) != 0) DIE("wrk warm-up failed");
                double mcpu0 = monitor_cpu(srv), pcpu0 = process_cpu();
                if (run_wrk(lua, port, seconds, line, sizeof line) != 0) DIE("wrk failed");
                if (monitor) {
                    mon_cpu += monitor_cpu(srv) - mcpu0;
                    proc_cpu += process_cpu() - pcpu0;
                }
                const char *rps = strstr(line, "\"requests_per_s\":");
                double v = rps ? atof(rps + 17) : 0;
                if (strstr(line, "\"non_2xx\":0}") == NULL) DIE("monitor run: errors: %s", line);
                (monitor ? on : off)[rep] = v;
                if (monitor) {
                    char metrics[4096];
                    pvg_srv_monitor_metrics(srv, metrics, sizeof metrics);
                    for (const char *q = metrics; (q = strstr(q, "privguide_alerts_total{"));) {
                        q = strchr(q, '}');
                        alerts += atoll(q + 2);
                    }
                }
                pvg_server_free(srv);
            }
        double mon_on = median(on, mon_reps), mon_off = median(off, mon_reps);
        int k = snprintf(mon, sizeof mon, "{\"reps\":%d,\"on\":[", mon_reps);
        for (int i = 0; i < mon_reps; i++)
            k += snprintf(mon + k, sizeof mon - (size_t)k, "%s%.1f", i ? "," : "", on[i]);
        k += snprintf(mon + k, sizeof mon - (size_t)k, "],\"off\":[");
        for (int i = 0; i < mon_reps; i++)
            k += snprintf(mon + k, sizeof mon - (size_t)k, "%s%.1f", i ? "," : "", off[i]);
        snprintf(mon + k, sizeof mon - (size_t)k,
                 "],\"median_on\":%.1f,\"median_off\":%.1f,\"cost_pct\":%.2f,"
                 "\"monitor_cpu_s\":%.3f,\"server_cpu_s\":%.3f,\"monitor_cpu_pct\":%.2f,"
                 "\"alerts\":%lld}",
                 mon_on, mon_off, mon_off > 0 ? 100.0 * (mon_off - mon_on) / mon_off : 0.0, mon_cpu,
                 proc_cpu, proc_cpu > 0 ? 100.0 * mon_cpu / proc_cpu : 0.0, alerts);
    }
    printf("{\"bench\":\"serve\",\"route\":\"GET /v1/users/{id}/recommendations?k=10\","
           "\"items\":%zu,\"factors\":%d,\"model_users\":%zu,\"request_users\":%ld,"
           "\"wrk\":{\"threads\":2,\"connections\":64,\"seconds\":%d},\"server_threads\":%d,"
           "\"setup_s\":%.1f,\"train_s\":%.1f,\"loadavg\":%.2f,\"nproc\":%ld,\n"
           " \"cached\":%s,\n \"uncached\":%s,\n \"monitor_cached\":%s,\n"
           " \"targets\":{\"requests_per_s\":15000,\"p99_ms\":10}}\n",
           model_items, factors, model_users, req_users, seconds, server_threads, setup_s, train_s,
           loadavg(), sysconf(_SC_NPROCESSORS_ONLN), cached, uncached, mon);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_serve: could not remove %s\n", dir);
    return 0;
}
