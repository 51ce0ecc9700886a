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
 *                    [request_users=1000] [server_threads=0: the server's default,
 *                    pvg_server_default_threads] [warmup_seconds=10]
 *                    [monitor_reps=0]
 * Needs wrk on PATH. The machine may be shared: the JSON has the load.
 * PVG_BENCH_SERVE_DIR=DIR keeps the store, model and wrk script in DIR and
 * reuses them when the sizes match (setup_s then 0; setup_reused has the
 * figures of the run that made them).
 * PVG_BENCH_SERVE_DATA=cyclic|categories|departments: how the purchases are
 * drawn (pick_item); departments trains with the product's iALS defaults,
 * and its factors cluster (the index serves at 200,000 and 1,000,000 items), e.g.
 * PVG_BENCH_SERVE_DATA=departments build/bench_serve 5 1000000 64 20000 1000 4 3 0
 * (setup about 2 minutes: the catalogue, 1.16M purchases through the bulk
 * events route, 16 iALS epochs). After each run the server is asked for the
 * lists of the first 256 requesting shoppers over HTTP with their own
 * tokens and those are compared with exact float scoring of every item
 * (served_recall_at_10_vs_exact): the recall of what the server served.
 */
#include "model/model_internal.h"
#include "server/server_internal.h"

#include <privguide/auth.h>
#include <privguide/ledger.h>
#include <privguide/model.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
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

static double rps_of(const char *line)
{
    const char *q = strstr(line, "\"requests_per_s\":");
    return q ? atof(q + 17) : 0;
}

/* CPU seconds of the calling thread (the machine may be shared: wall time
 * would count other processes' turns) */
static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- scoring alone (no HTTP): the reference path against the fast one ---- */

/* Scoring jobs a = 0..nb-1 for shoppers first + a: their factor row of U
 * (f wide), their history excluded (when hist_indptr), top k into
 * idx[a] / sc[a]; jp[a] points at jobs[a]. */
static void fill_jobs(pvg_serve_job *jobs, pvg_serve_job **jp, int64_t (*idx)[10], float (*sc)[10],
                      size_t nb, size_t first, const float *U, size_t f, const uint32_t *hist_items,
                      const uint64_t *hist_indptr, size_t k)
{
    for (size_t a = 0; a < nb; a++) {
        size_t u = first + a;
        memset(&jobs[a], 0, sizeof jobs[a]);
        jobs[a].u = U + u * f;
        if (hist_indptr) {
            jobs[a].excl = hist_items + hist_indptr[u];
            jobs[a].n_excl = (size_t)(hist_indptr[u + 1] - hist_indptr[u]);
        }
        jobs[a].k = k;
        jobs[a].idx = idx[a];
        jobs[a].sc = sc[a];
        jp[a] = &jobs[a];
    }
}

/* Per-user time of the reference path (every item scored from the f16
 * copy, heap top-k: what served before the int8 path) and of the int8
 * batch path at batch sizes 1..32, and recall@10 of the fast answer
 * against exact float scoring, over nu users U[nu x f] (histories excluded
 * when hist_indptr is given). Writes a JSON object into out. */
static void scoring_json(const float *V, const uint16_t *V16, size_t n, size_t f, const float *U,
                         size_t nu, const uint64_t *hist_indptr, const uint32_t *hist_items,
                         char *out, size_t len)
{
    size_t k = 10;
    float *scores = malloc(n * sizeof *scores);
    int64_t idx[10];
    float sc[10];
    if (!scores) DIE("out of memory");
    /* reference */
    double t0 = thread_cpu();
    size_t reps = 0;
    do {
        for (size_t a = 0; a < nu && a < 64; a++, reps++) {
            if (V16)
                pvg_matvec_f16(V16, n, f, U + a * f, scores);
            else
                pvg_matvec(V, n, f, U + a * f, scores);
            if (hist_indptr)
                for (uint64_t q = hist_indptr[a]; q < hist_indptr[a + 1]; q++)
                    scores[hist_items[q]] = -INFINITY;
            pvg_topk(scores, n, k, idx, sc);
        }
    } while (thread_cpu() - t0 < 1.0);
    double ref_us = (thread_cpu() - t0) / (double)reps * 1e6;
    pvg_i8_items Q;
    if (pvg_i8_items_build(V, n, f, &Q)) DIE("out of memory");
    pvg_serve_job jobs[32];
    pvg_serve_job *jp[32];
    int64_t jidx[32][10];
    float jsc[32][10];
    size_t bs[] = {1, 4, 16, 32};
    double fast_us[4];
    for (int b = 0; b < 4; b++) {
        size_t nb = bs[b];
        double t1 = thread_cpu();
        size_t done = 0;
        do {
            for (size_t a0 = 0; a0 + nb <= nu && a0 < 64; a0 += nb) {
                fill_jobs(jobs, jp, jidx, jsc, nb, a0, U, f, hist_items, hist_indptr, k);
                if (pvg_serve_score(&Q, V, (const pvg_serve_job *const *)jp, nb)) DIE("score");
                done += nb;
            }
        } while (thread_cpu() - t1 < 1.0);
        fast_us[b] = (thread_cpu() - t1) / (double)done * 1e6;
    }
    /* recall against exact float scores */
    size_t hit = 0, total = 0, nr = nu < 200 ? nu : 200;
    for (size_t u = 0; u < nr; u++) {
        fill_jobs(jobs, jp, jidx, jsc, 1, u, U, f, hist_items, hist_indptr, k);
        if (pvg_serve_score(&Q, V, (const pvg_serve_job *const *)jp, 1)) DIE("score");
        pvg_matvec_naive(V, n, f, U + u * f, scores);
        for (size_t q = 0; q < jobs[0].n_excl; q++)
            scores[jobs[0].excl[q]] = -INFINITY;
        size_t want = pvg_topk(scores, n, k, idx, sc);
        for (size_t q = 0; q < jobs[0].n_out; q++)
            for (size_t r = 0; r < want; r++)
                hit += jidx[0][q] == idx[r];
        total += want;
    }
    snprintf(
        out, len,
        "{\"items\":%zu,\"factors\":%zu,\"timing\":\"thread_cpu\",\"reference_us_per_user\":%.1f,"
        "\"int8_us_per_user\":{\"batch1\":%.1f,\"batch4\":%.1f,\"batch16\":%.1f,"
        "\"batch32\":%.1f},\"speedup_batch1\":%.2f,\"speedup_batch16\":%.2f,"
        "\"recall_at_10_vs_exact\":%.4f,\"recall_users\":%zu,\"candidates\":%zu,"
        "\"vnni\":%d}",
        n, f, ref_us, fast_us[0], fast_us[1], fast_us[2], fast_us[3], ref_us / fast_us[0],
        ref_us / fast_us[2], total ? (double)hit / (double)total : 0.0, nr, pvg_serve_candidates(k),
        __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw"));
    pvg_i8_items_free(&Q);
    free(scores);
}

/* The approximate index (src/model/serve_index.c) on the served model's
 * factors, built as the server builds it (calibrated on up to 1,024 of the
 * model's shoppers, their histories excluded): its lists, the measured
 * nprobe and the share of lists that is (over PVG_IVF_MAX_SHARE the server
 * scans every item instead), and at the measured nprobe and at 5%, 10% and
 * 20% of the lists, recall@10 against exact float scoring and thread CPU
 * per shopper (batches of 1 and 8) over the nu shoppers U (histories
 * excluded). Writes a JSON object into out. */
static void index_json(const pvg_model *m, const float *U, size_t nu, const uint64_t *hist_indptr,
                       const uint32_t *hist_items, const int64_t (*want)[10], const size_t *nwant,
                       char *out, size_t len)
{
    size_t n = m->n_items, f = m->factors, k = 10;
    pvg_ivf ix;
    if (pvg_ivf_build(m->V, n, f, 0, m->U, m->n_users, m->hist_indptr, m->hist_items, &ix))
        DIE("out of memory");
    size_t probes[4] = {pvg_ivf_default_nprobe(&ix), (ix.nlist + 19) / 20, (ix.nlist + 9) / 10,
                        (ix.nlist + 4) / 5};
    int o = snprintf(out, len,
                     "{\"nlist\":%zu,\"nprobe_measured\":%zu,\"share\":%.3f,\"max_share\":%.2f,"
                     "\"build_s\":%.2f,\"build_cpu_s\":%.2f,\"bytes\":%zu,"
                     "\"calibrated_on\":\"model shoppers\",\"at\":[",
                     ix.nlist, probes[0], (double)probes[0] / (double)ix.nlist, PVG_IVF_MAX_SHARE,
                     ix.build_seconds, ix.build_cpu_seconds, pvg_ivf_bytes(&ix));
    pvg_serve_job jobs[8];
    pvg_serve_job *jp[8];
    int64_t jidx[8][10];
    float jsc[8][10];
    for (int pi = 0; pi < 4; pi++) {
        size_t np = probes[pi], hit = 0, total = 0;
        double us[2];
        for (int b = 0; b < 2; b++) {
            size_t nb = b ? 8 : 1, done = 0;
            double t0 = thread_cpu();
            for (size_t a0 = 0; a0 + nb <= nu; a0 += nb) {
                fill_jobs(jobs, jp, jidx, jsc, nb, a0, U, f, hist_items, hist_indptr, k);
                /* the first: the default probing, as the server does (by
                 * reach: np is the mean lists it probes) */
                if (pvg_ivf_score(&ix, m->V, pi ? np : 0, (const pvg_serve_job *const *)jp, nb))
                    DIE("score");
                done += nb;
                if (b == 0) {
                    for (size_t q = 0; q < jobs[0].n_out; q++)
                        for (size_t r = 0; r < nwant[a0]; r++)
                            hit += jidx[0][q] == want[a0][r];
                    total += nwant[a0];
                }
            }
            us[b] = done ? (thread_cpu() - t0) / (double)done * 1e6 : 0;
        }
        o += snprintf(out + o, len - (size_t)o,
                      "%s{\"nprobe\":%zu,\"by_reach\":%d,\"recall_at_10_vs_exact\":%.4f,"
                      "\"us_per_user\":{\"batch1\":%.1f,\"batch8\":%.1f}}",
                      pi ? "," : "", np, pi == 0, total ? (double)hit / (double)total : 0.0, us[0],
                      us[1]);
    }
    snprintf(out + o, len - (size_t)o, "],\"recall_users\":%zu}", nu);
    pvg_ivf_free(&ix);
}

/* Exact top-10 (float scores of every item, the shopper's history
 * excluded, as serving excludes it) of the nu shoppers U[nu x f] into
 * want / nwant. */
static void exact_top10(const pvg_model *m, const float *U, size_t nu, const uint64_t *hist_indptr,
                        const uint32_t *hist_items, int64_t (*want)[10], size_t *nwant)
{
    size_t n = m->n_items, f = m->factors;
    float *scores = malloc(n * sizeof *scores), sc[10];
    if (!scores) DIE("out of memory");
    for (size_t u = 0; u < nu; u++) {
        pvg_matvec_naive(m->V, n, f, U + u * f, scores);
        for (uint64_t q = hist_indptr[u]; q < hist_indptr[u + 1]; q++)
            scores[hist_items[q]] = -INFINITY;
        nwant[u] = pvg_topk(scores, n, 10, want[u], sc);
    }
    free(scores);
}

/* bench_serve scoring [items] [factors] [users]: scoring alone on synthetic
 * factors (clustered tastes, varied item norms), no store or HTTP. */
static int scoring_main(int argc, char **argv)
{
    size_t n = argc > 2 ? (size_t)atol(argv[2]) : 1000000;
    size_t f = argc > 3 ? (size_t)atol(argv[3]) : 64;
    size_t nu = argc > 4 ? (size_t)atol(argv[4]) : 256;
    if (n < 16 || f < 1 || f > 1024 || nu < 32)
        DIE("usage: bench_serve scoring [items] [factors] [users>=32]");
    size_t nc = 64;
    float *C = malloc(nc * f * sizeof *C), *V = malloc(n * f * sizeof *V),
          *U = malloc(nu * f * sizeof *U);
    uint16_t *V16 = malloc(((n + 7) / 8 * 8) * f * sizeof *V16);
    if (!C || !V || !U || !V16) DIE("out of memory");
    for (size_t i = 0; i < nc * f; i++)
        C[i] = (float)((double)(rnd() >> 11) / 9007199254740992.0 - 0.5);
    for (size_t i = 0; i < n + nu; i++) {
        size_t c = (size_t)(rnd() % nc);
        float norm = (float)(0.2 + 1.5 * ((double)(rnd() >> 11) / 9007199254740992.0));
        float *row = i < n ? V + i * f : U + (i - n) * f;
        for (size_t j = 0; j < f; j++)
            row[j] = norm * (C[c * f + j] +
                             0.5f * (float)((double)(rnd() >> 11) / 9007199254740992.0 - 0.5));
    }
    pvg_f16_pack(V, n, f, V16);
    char out[1024];
    scoring_json(V, V16, n, f, U, nu, NULL, NULL, out, sizeof out);
    printf("{\"bench\":\"serve_scoring\",\"factors_source\":\"synthetic\",\"loadavg\":%.2f,"
           "\"nproc\":%ld,\"scoring\":%s}\n",
           loadavg(), sysconf(_SC_NPROCESSORS_ONLN), out);
    free(C);
    free(V);
    free(U);
    free(V16);
    return 0;
}

/* ---- the served lists against exact scoring ---- */

/* kB of the process's resident set now (field "VmRSS:") or at its peak
 * ("VmHWM:"), from /proc/self/status; -1 when unknown */
static long status_kb(const char *field)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, strlen(field)) == 0) {
            kb = atol(line + strlen(field));
            break;
        }
    fclose(f);
    return kb;
}

/* GET path on 127.0.0.1:port with the Authorization header auth (HTTP/1.1,
 * Connection: close); the body into buf (NUL-terminated). Returns the HTTP
 * status, or -1. */
static int http_get(int port, const char *path, const char *auth, char *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char req[2048];
    int rl = snprintf(req, sizeof req,
                      "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: %s\r\n"
                      "Connection: close\r\n\r\n",
                      path, auth);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || rl <= 0 ||
        (size_t)rl >= sizeof req || write(fd, req, (size_t)rl) != rl) {
        close(fd);
        return -1;
    }
    size_t got = 0;
    long want = -1; /* header bytes + Content-Length, once known */
    while (got + 1 < cap && (want < 0 || (long)got < want)) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
        buf[got] = 0;
        char *he = strstr(buf, "\r\n\r\n");
        if (he && want < 0) {
            for (char *q = buf; q < he; q++)
                if (strncasecmp(q, "\r\ncontent-length:", 17) == 0) {
                    want = (long)(he + 4 - buf) + atol(q + 17);
                    break;
                }
        }
    }
    close(fd);
    buf[got] = 0;
    int status = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) return -1;
    char *he = strstr(buf, "\r\n\r\n");
    if (!he) return -1;
    memmove(buf, he + 4, strlen(he + 4) + 1);
    return status;
}

/* The Authorization values of the wrk script (shopper U<i> at i). */
static char **read_tokens(const char *lua, long n)
{
    FILE *f = fopen(lua, "r");
    if (!f) DIE("cannot read %s", lua);
    char **tok = calloc((size_t)n, sizeof *tok), line[1024];
    long i = 0;
    if (!tok) DIE("out of memory");
    while (i < n && fgets(line, sizeof line, f)) {
        char *b = strstr(line, "\"Bearer "), *e = b ? strchr(b + 1, '"') : NULL;
        if (!e) continue;
        *e = 0;
        if (!(tok[i++] = strdup(b + 1))) DIE("out of memory");
    }
    fclose(f);
    if (i < n) DIE("%s: %ld tokens, want %ld", lua, i, n);
    return tok;
}

/* recall@10 of the lists the server at port answers (GET
 * /v1/users/U<a>/recommendations?k=10 with shopper a's own token) against
 * the exact lists ids[a] of the first nu shoppers; appends a JSON fragment
 * to out. */
static void served_recall(int port, char **tok, size_t nu, char (*ids)[10][24], const size_t *n_ids,
                          char *out, size_t len)
{
    size_t hit = 0, total = 0, bad = 0, distinct = 0;
    char *body = malloc(1 << 16), path[64];
    char(*seen)[24] = calloc(nu * 10, sizeof *seen);
    if (!body || !seen) DIE("out of memory");
    for (size_t a = 0; a < nu; a++) {
        snprintf(path, sizeof path, "/v1/users/U%zu/recommendations?k=10", a);
        if (http_get(port, path, tok[a], body, 1 << 16) != 200) {
            bad++;
            continue;
        }
        total += n_ids[a];
        const char *q = strstr(body, "\"items\"");
        for (int got = 0; q && got < 10 && (q = strstr(q, "\"item\":\"")); got++) {
            q += 8;
            const char *e = strchr(q, '"');
            if (!e) break;
            char id[24];
            snprintf(id, sizeof id, "%.*s", (int)(e - q < 23 ? e - q : 23), q);
            for (size_t r = 0; r < n_ids[a]; r++)
                hit += strcmp(id, ids[a][r]) == 0;
            size_t d = 0;
            while (d < distinct && strcmp(seen[d], id) != 0)
                d++;
            if (d == distinct) memcpy(seen[distinct++], id, sizeof id);
            q = e;
        }
    }
    size_t ol = strlen(out);
    if (ol && out[ol - 1] == '}')
        snprintf(out + ol - 1, len - (ol - 1),
                 ",\"served_recall_at_10_vs_exact\":%.4f,\"recall_shoppers\":%zu,"
                 "\"recall_failed\":%zu,\"distinct_items_in_lists\":%zu}",
                 total ? (double)hit / (double)total : 0.0, nu - bad, bad, distinct);
    free(body);
    free(seen);
}

/* ---- the synthetic shop ---- */

/* How the synthetic purchases are drawn (PVG_BENCH_SERVE_DATA). */
enum { DATA_CYCLIC, DATA_CATEGORIES, DATA_DEPARTMENTS };

static double unit(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

/* The item of shopper u's purchase j of per_user (the first per_user - 8
 * are runs of consecutive items, so that every item is bought at least
 * once; the rest skewed to popular items), over n items. */
static long pick_item(int kind, long u, long j, long per_user, long n)
{
    const long CAT = 500; /* items per category */
    long run = per_user - 8;
    if (kind == DATA_CYCLIC) {
        if (j < run) return (u * run + j) % n;
        double x = unit();
        return (long)((double)n * x * x * x); /* skew */
    }
    long n_cat = (n + CAT - 1) / CAT, c1 = u % n_cat;
#define CAT_SIZE(c) ((c) == n_cat - 1 ? n - (c)*CAT : CAT)
    /* categories of CAT consecutive items; shopper u's own category
     * u % n_cat (its runs of consecutive items cover every item), a second
     * one, and now and then anything */
    if (kind == DATA_CATEGORIES) {
        long c2 = (u * 7919 + 13) % n_cat;
        double x = unit(), y = unit();
        if (j < run) return c1 * CAT + ((u / n_cat) * run + j) % CAT_SIZE(c1);
        if (y < 0.6) return c1 * CAT + (long)((double)CAT_SIZE(c1) * x * x * x);
        if (y < 0.85) return c2 * CAT + (long)((double)CAT_SIZE(c2) * x * x * x);
        return (long)((double)n * x * x * x);
    }
    /* departments of DEPT categories: the shopper's second category is in
     * the department of the first, some purchases anywhere in that
     * department, a few anywhere in the shop */
    const long DEPT = 20;
    long d0 = c1 / DEPT * DEPT, dn = n_cat - d0 < DEPT ? n_cat - d0 : DEPT;
    long c2 = dn > 1 ? d0 + (c1 - d0 + 1 + (u / n_cat) % (dn - 1)) % dn : c1;
    double x = unit(), y = unit();
    if (j < run) return c1 * CAT + ((u / n_cat) * run + j) % CAT_SIZE(c1);
    if (y < 0.5) return c1 * CAT + (long)((double)CAT_SIZE(c1) * x * x * x);
    if (y < 0.75) return c2 * CAT + (long)((double)CAT_SIZE(c2) * x * x * x);
    if (y < 0.9) {
        long c = d0 + (long)(rnd() % (uint64_t)dn);
        return c * CAT + (long)((double)CAT_SIZE(c) * x * x * x);
    }
    return (long)((double)n * x * x * x);
#undef CAT_SIZE
}

/* Puts n prepared events through the store's bulk route (one transaction);
 * every one must be taken. */
static void put_events(pvg_store *s, const pvg_event_in *in, pvg_event_out *out, size_t n)
{
    pvg_error err;
    long long stored = 0, dup = 0;
    if (n == 0) return;
    if (pvg_store_events_put(s, in, n, out, &stored, &dup, &err) != PVG_OK)
        DIE("events put: %s", err.text);
    for (size_t i = 0; i < n; i++)
        if (out[i].status != PVG_OK) DIE("event %zu refused: %s", i, out[i].message);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "scoring") == 0) return scoring_main(argc, argv);
    int seconds = argc > 1 ? atoi(argv[1]) : 10;
    long n_items = argc > 2 ? atol(argv[2]) : 100000;
    int factors = argc > 3 ? atoi(argv[3]) : 64;
    long n_users = argc > 4 ? atol(argv[4]) : 20000;
    long req_users = argc > 5 ? atol(argv[5]) : 1000;
    int server_threads = argc > 6 ? atoi(argv[6]) : 0; /* 0: the server's default */
    int warm_s = argc > 7 ? atoi(argv[7]) : 10;
    int mon_reps = argc > 8 ? atoi(argv[8]) : 0;
    if (argc <= 6 || server_threads == 0) server_threads = pvg_server_default_threads();
    if (warm_s < 1 || server_threads < 1 || server_threads > 256 || seconds < 1 || n_items < 100 ||
        factors < 1 || n_users < 10 || req_users < 1 || req_users > n_users)
        DIE("usage: bench_serve [seconds] [items] [factors] [users] [request_users]");
    if (system("command -v wrk >/dev/null 2>&1") != 0) {
        printf(
            "{\"bench\":\"serve\",\"skipped\":\"wrk is not installed (apt-get install wrk)\"}\n");
        return 0;
    }
    /* PVG_BENCH_SERVE_DIR=DIR keeps the store, model and wrk script in DIR
     * and reuses them on the next run with the same sizes (setup takes
     * minutes; the runs themselves seconds) */
    const char *keep = getenv("PVG_BENCH_SERVE_DIR");
    char dir[256] = "/tmp/pvg_bench_serve_XXXXXX";
    if (keep && *keep) {
        if (strlen(keep) >= 128) DIE("PVG_BENCH_SERVE_DIR: longer than 127 bytes");
        snprintf(dir, sizeof dir, "%s", keep);
        (void)mkdir(dir, 0700);
    } else if (!mkdtemp(dir)) {
        DIE("mkdtemp failed");
    }
    char dd[300], mp[320], lua[300], ready[300], sizes[128], cmd[1024];
    snprintf(dd, sizeof dd, "%s/data", dir);
    snprintf(mp, sizeof mp, "%s/model.pvgm", dd);
    snprintf(lua, sizeof lua, "%s/recs.lua", dir);
    snprintf(ready, sizeof ready, "%s/ready", dir);
    /* PVG_BENCH_SERVE_DATA: "cyclic" (default: each shopper buys a run of
     * consecutive items plus popular ones; the trained factors have little
     * cluster structure), "categories" (items in categories of 500, each
     * shopper keen on two of them, popularity skewed within each: the
     * structure of a real shop's catalogue) or "departments" (the same
     * categories grouped 20 to a department, a shopper's two categories and
     * a share of their purchases in one department) */
    const char *data_env = getenv("PVG_BENCH_SERVE_DATA");
    static const char *const kinds[] = {"cyclic", "categories", "departments"};
    int kind = DATA_CYCLIC;
    if (data_env && *data_env) {
        for (kind = 0; kind < 3 && strcmp(data_env, kinds[kind]) != 0; kind++)
            ;
        if (kind == 3)
            DIE("PVG_BENCH_SERVE_DATA: want cyclic, categories or departments, got \"%.40s\"",
                data_env);
    }
    snprintf(sizes, sizeof sizes, "%ld %d %ld %ld%s%s\n", n_items, factors, n_users, req_users,
             kind ? " " : "", kind ? kinds[kind] : "");
    int reuse = 0;
    char setup_js[512] = "";
    if (keep && *keep) {
        char have[128] = "";
        FILE *rf = fopen(ready, "r");
        if (rf) {
            if (!fgets(have, sizeof have, rf)) have[0] = 0;
            fclose(rf);
        }
        reuse = strcmp(have, sizes) == 0;
        /* the second line: the setup's figures when it was made */
        char made[400] = "";
        if (reuse && (rf = fopen(ready, "r"))) {
            if (!fgets(have, sizeof have, rf) || !fgets(made, sizeof made, rf)) made[0] = 0;
            fclose(rf);
        }
        size_t ml = strlen(made);
        while (ml && made[ml - 1] == '\n')
            made[--ml] = 0;
        int made_ok = strncmp(made, "\"setup_s\":", 10) == 0 && ml && made[ml - 1] == '}';
        if (reuse)
            snprintf(setup_js, sizeof setup_js,
                     "\"setup_s\":0,\"train_s\":0,\"setup_reused\":%s%s%s", made_ok ? "{" : "",
                     made_ok ? made : "null", made_ok ? "}" : "");
        if (!reuse) {
            snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' '%s'", dd, lua, ready);
            if (system(cmd) != 0) DIE("cannot clear %s", dir);
        }
    }
    pvg_error err;
    if (!reuse && pvg_store_init(dd, NULL, &err) != PVG_OK) DIE("init: %s", err.text);
    pvg_store *s = NULL;
    if (pvg_store_open(dd, &s, &err) != PVG_OK) DIE("open: %s", err.text);
    long long n_events = 0;
    int train_epochs = 0;
    double t0 = now_s(), train_s = 0, setup_s = 0, catalog_s = 0, events_s = 0, dataset_s = 0;
    pvg_model *m = NULL;
    pvg_dataset *ds = NULL;
    /* the exact top-10 of the first n_exact requesting shoppers */
    static char exact_ids[256][10][24];
    static size_t exact_n[256];
    size_t n_exact = 0;
    if (reuse) {
        if (pvg_model_load_store(mp, s, &m, &err) != PVG_OK) DIE("model: %s", err.text);
        goto scoring;
    }

    /* catalog */
    if (pvg_store_begin(s, &err) != PVG_OK) DIE("begin: %s", err.text);
    for (long i = 0; i < n_items; i++) {
        char id[32], title[64];
        snprintf(id, sizeof id, "I%06ld", i);
        snprintf(title, sizeof title, "Synthetic item %ld", i);
        pvg_item it = {0, id, title, NULL, 1.0 + (double)(i % 500) / 10.0, NULL, 1, -1};
        if (pvg_store_item_put(s, &it, NULL, &err) != PVG_OK) DIE("item: %s", err.text);
    }
    if (pvg_store_commit(s, &err) != PVG_OK) DIE("commit: %s", err.text);
    catalog_s = now_s() - t0;

    /* interactions through the store (the server serves only models trained
     * from its store): every item at least once, the rest skewed to popular
     * items; put as the API's bulk route does (pvg_store_events_put: the
     * events prepared and sealed outside the write transaction, then one
     * commit per batch of EVENTS_BATCH) */
    double t_cat = now_s();
    long per_user = (n_items + n_users - 1) / n_users + 8;
    int64_t ts = (int64_t)time(NULL) - 86400;
    enum { EVENTS_BATCH = 16384 };
    pvg_event *evs = calloc(EVENTS_BATCH, sizeof *evs);
    pvg_event_in *ein = calloc(EVENTS_BATCH, sizeof *ein);
    pvg_event_out *eout = calloc(EVENTS_BATCH, sizeof *eout);
    char(*eitem)[24] = calloc(EVENTS_BATCH, sizeof *eitem);
    char(*euser)[24] = calloc(EVENTS_BATCH, sizeof *euser);
    if (!evs || !ein || !eout || !eitem || !euser) DIE("out of memory");
    size_t nb = 0;
    for (long u = 0; u < n_users; u++) {
        if (nb + (size_t)per_user > EVENTS_BATCH) {
            put_events(s, ein, eout, nb);
            n_events += (long long)nb;
            nb = 0;
        }
        for (long j = 0; j < per_user; j++, nb++) {
            long item = pick_item(kind, u, j, per_user, n_items);
            snprintf(eitem[nb], sizeof eitem[nb], "I%06ld", item);
            snprintf(euser[nb], sizeof euser[nb], "U%ld", u);
            memset(&evs[nb], 0, sizeof evs[nb]);
            evs[nb].type = PVG_EVENT_PURCHASE;
            evs[nb].item = eitem[nb];
            evs[nb].ts = ts + j;
            ein[nb].user = euser[nb];
            ein[nb].event = &evs[nb];
            ein[nb].dedup_key = NULL;
            ein[nb].index = (long)nb;
        }
    }
    put_events(s, ein, eout, nb);
    n_events += (long long)nb;
    free(evs);
    free(ein);
    free(eout);
    free(eitem);
    free(euser);
    events_s = now_s() - t_cat;
    double t_ds = now_s();
    if (pvg_dataset_load_store(s, NULL, &ds, NULL, &err) != PVG_OK) DIE("dataset: %s", err.text);
    dataset_s = now_s() - t_ds;
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_IALS, &p);
    p.factors = factors;
    /* cyclic and categories: 2 epochs (the figures in docs/models.md were
     * taken so); departments: the product's default (16) */
    if (kind != DATA_DEPARTMENTS) p.epochs = 2;
    train_epochs = p.epochs;
    p.threads = 2;
    double t1 = now_s();
    if (pvg_model_train(ds, &p, &m, NULL, &err) != PVG_OK) DIE("train: %s", err.text);
    train_s = now_s() - t1;
    if (pvg_model_save(m, mp, &err) != PVG_OK) DIE("save: %s", err.text);
    setup_s = now_s() - t0;
scoring:
    /* scoring alone on the trained model: the requesting shoppers' rows */
    char scoring[1024], index[1536];
    {
        size_t nu = req_users < 256 ? (size_t)req_users : 256, f = m->factors;
        float *U = malloc(nu * f * sizeof *U);
        uint64_t *ip = malloc((nu + 1) * sizeof *ip);
        uint32_t *hi = NULL;
        size_t nh = 0;
        if (!U || !ip) DIE("out of memory");
        ip[0] = 0;
        for (size_t a = 0; a < nu; a++) {
            char user[32];
            unsigned char key[16];
            snprintf(user, sizeof user, "U%zu", a);
            if (pvg_model_user_key(m, s, user, key, &err) != PVG_OK) DIE("key: %s", err.text);
            int64_t row = pvg_model_find_user(m, key);
            if (row < 0) DIE("user %s not in the model", user);
            memcpy(U + a * f, m->U + (size_t)row * f, f * sizeof *U);
            uint64_t h0 = m->hist_indptr[row], h1 = m->hist_indptr[row + 1];
            hi = realloc(hi, (nh + (size_t)(h1 - h0) + 1) * sizeof *hi);
            if (!hi) DIE("out of memory");
            memcpy(hi + nh, m->hist_items + h0, (size_t)(h1 - h0) * sizeof *hi);
            nh += (size_t)(h1 - h0);
            ip[a + 1] = nh;
        }
        scoring_json(m->V, m->V16, m->n_items, f, U, nu, ip, hi, scoring, sizeof scoring);
        /* the exact lists of the first nu requesting shoppers: for the
         * index's recall here and the served lists' recall after each run */
        n_exact = nu;
        int64_t(*want)[10] = malloc(nu * sizeof *want);
        size_t *nwant = malloc(nu * sizeof *nwant);
        if (!want || !nwant) DIE("out of memory");
        exact_top10(m, U, nu, ip, hi, want, nwant);
        for (size_t a = 0; a < nu; a++) {
            exact_n[a] = nwant[a];
            for (size_t r = 0; r < nwant[a]; r++) {
                const char *id = pvg_model_item_id(m, want[a][r]);
                snprintf(exact_ids[a][r], sizeof exact_ids[a][r], "%s", id ? id : "");
            }
        }
        index_json(m, U, nu, ip, hi, (const int64_t(*)[10])want, nwant, index, sizeof index);
        free(want);
        free(nwant);
        free(U);
        free(ip);
        free(hi);
    }
    size_t model_items = pvg_model_n_items(m), model_users = pvg_model_n_users(m);
    pvg_model_free(m);
    pvg_dataset_free(ds);
    if (reuse) {
        pvg_store_free(s);
        goto serve;
    }

    /* the requesting users consent to personalisation */
    double t_tok = now_s();
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
    setup_s += now_s() - t_tok;
    snprintf(setup_js, sizeof setup_js,
             "\"setup_s\":%.1f,\"train_s\":%.1f,\"setup\":{\"catalog_s\":%.1f,\"events\":%lld,"
             "\"events_s\":%.1f,\"dataset_s\":%.1f,\"epochs\":%d,\"peak_rss_mb\":%.0f}",
             setup_s, train_s, catalog_s, n_events, events_s, dataset_s, train_epochs,
             (double)status_kb("VmHWM:") / 1024.0);
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
    if (keep && *keep) {
        FILE *rf = fopen(ready, "w");
        if (!rf || fputs(sizes, rf) < 0 || fprintf(rf, "%s\n", setup_js) < 0 || fclose(rf) != 0)
            DIE("cannot write %s", ready);
    }
serve:;

    /* three servers, one after another: the headline uncached route (the
     * cache off, every request scored: int8 micro-batches), the same with
     * the reference scoring path (every item from the f16 copy, one request
     * at a time), and the cached route after a warm-up pass */
    char cached[1024] = "", uncached[1024] = "", uncached_ref[1024] = "", uncached_wide[1024] = "";
    int wide_threads = server_threads * 4 > 256 ? 256 : server_threads * 4;
    /* PVG_BENCH_SERVE_PASSES: which of the four runs (e.g. "0" or "0,2";
     * default all), to profile one; the others print null */
    const char *passes = getenv("PVG_BENCH_SERVE_PASSES");
    char **tok = n_exact ? read_tokens(lua, (long)n_exact) : NULL;
    for (int pass = 0; pass < 4; pass++) {
        char pc[2] = {(char)('0' + pass), 0};
        if (passes && *passes && !strstr(passes, pc)) {
            snprintf(pass == 0   ? uncached
                     : pass == 1 ? uncached_ref
                     : pass == 2 ? cached
                                 : uncached_wide,
                     1024, "null");
            continue;
        }
        pvg_server_options o;
        memset(&o, 0, sizeof o);
        o.data_dir = dd;
        /* pass 3: the uncached route with 4x the server threads (more
         * requests in flight at once: larger batches) */
        o.threads = pass == 3 ? wide_threads : server_threads;
        o.cache_entries = pass == 2 ? 0 : -1;
        pvg_server *srv = NULL;
        /* the server loads the model and makes its serving state (the int8
         * copy, or the index: built and calibrated) before it answers */
        double st0 = now_s();
        if (pvg_server_start(&o, &srv, &err) != PVG_OK) DIE("start: %s", err.text);
        double start_s = now_s() - st0;
        int port = pvg_server_port(srv);
        pvg_srv_model *sm = pvg_srv_model_acquire(srv);
        if (!sm) DIE("no model in service");
        sm->model->no_fast_serve = pass == 1;
        long long b0, j0, mb0;
        pvg_serve_stats(sm->model, &b0, &j0, &mb0);
        char warm[512];
        /* warm-up: long enough for every requesting user to be scored once */
        if (pass == 2 && run_wrk(lua, port, warm_s, warm, sizeof warm) != 0)
            DIE("wrk warm-up failed");
        char *out = pass == 0   ? uncached
                    : pass == 1 ? uncached_ref
                    : pass == 2 ? cached
                                : uncached_wide;
        pthread_mutex_lock(&srv->audit.mu);
        long long ws0 = srv->audit.wal_side_passes, wo0 = srv->audit.wal_own_passes;
        pthread_mutex_unlock(&srv->audit.mu);
        long long ae0 = atomic_load(&srv->metrics.audit_entries),
                  ac0 = atomic_load(&srv->metrics.audit_commits);
        double cpu0 = process_cpu();
        long long h0 = atomic_load(&srv->metrics.cache_hits);
        long long p0 = atomic_load(&srv->metrics.recs_personal);
        if (run_wrk(lua, port, seconds, out, 400) != 0) DIE("wrk failed");
        double cpu = process_cpu() - cpu0;
        long long ae = atomic_load(&srv->metrics.audit_entries) - ae0,
                  ac = atomic_load(&srv->metrics.audit_commits) - ac0;
        long long hits = atomic_load(&srv->metrics.cache_hits) - h0;
        long long pers = atomic_load(&srv->metrics.recs_personal) - p0;
        long long b1, j1, mb1;
        pvg_serve_stats(sm->model, &b1, &j1, &mb1);
        /* the WAL's checkpoints during the run (audit_writer.c) */
        pthread_mutex_lock(&srv->audit.mu);
        long long wal_side = srv->audit.wal_side_passes - ws0,
                  wal_own = srv->audit.wal_own_passes - wo0, wal_peak = srv->audit.wal_peak_frames;
        pthread_mutex_unlock(&srv->audit.mu);
        /* what scored: the approximate index (lists probed of all) or the
         * exact int8 scan of every item */
        pvg_serve *ss = sm->model->no_fast_serve ? NULL : pvg_model_serve(sm->model);
        int use_ix = ss && pvg_serve_uses_index(ss);
        size_t ol = strlen(out);
        if (ol && out[ol - 1] == '}')
            snprintf(out + ol - 1, 1024 - (ol - 1),
                     ",\"personalized\":%lld,\"cache_hits\":%lld,\"batches\":%lld,"
                     "\"mean_batch\":%.2f,\"max_batch\":%lld,\"audit_commits\":%lld,"
                     "\"mean_audit_batch\":%.2f,\"server_cpu_us_per_request\":%.1f,"
                     "\"scorer\":\"%s\",\"nprobe\":%zu,\"nlist\":%zu,\"loadavg\":%.2f,"
                     "\"server_start_s\":%.1f,\"rss_mb\":%.0f,\"wal_side_passes\":%lld,"
                     "\"wal_own_passes\":%lld,\"wal_peak_frames\":%lld}",
                     pers, hits, b1 - b0, b1 > b0 ? (double)(j1 - j0) / (double)(b1 - b0) : 0.0,
                     mb1, ac, ac ? (double)ae / (double)ac : 0.0,
                     pers > 0 ? cpu * 1e6 / (double)pers : 0.0,
                     !ss      ? "reference"
                     : use_ix ? "ivf"
                              : "int8_scan",
                     use_ix ? pvg_serve_nprobe(ss) : 0,
                     use_ix ? pvg_ivf_default_nlist(pvg_model_n_items(sm->model)) : 0, loadavg(),
                     start_s, (double)status_kb("VmRSS:") / 1024.0, wal_side, wal_own, wal_peak);
        /* what the server answered the first n_exact requesting shoppers,
         * against exact scoring of every item */
        if (n_exact) served_recall(port, tok, n_exact, exact_ids, exact_n, out, 1024);
        pvg_srv_model_release(sm);
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
           "\"data\":\"%s\",\"peak_rss_mb\":%.0f,%s,\"loadavg\":%.2f,\"nproc\":%ld,\n"
           " \"uncached\":%s,\n \"uncached_reference\":%s,\n \"cached\":%s,\n"
           " \"uncached_wide\":{\"server_threads\":%d,\"run\":%s},\n"
           " \"uncached_speedup\":%.2f,\n \"scoring\":%s,\n \"index\":%s,\n"
           " \"monitor_cached\":%s,\n"
           " \"targets\":{\"uncached_requests_per_s\":10000,\"uncached_p99_ms\":20}}\n",
           model_items, factors, model_users, req_users, seconds, server_threads, kinds[kind],
           (double)status_kb("VmHWM:") / 1024.0, setup_js, loadavg(), sysconf(_SC_NPROCESSORS_ONLN),
           uncached, uncached_ref, cached, wide_threads, uncached_wide,
           rps_of(uncached_ref) > 0 ? rps_of(uncached) / rps_of(uncached_ref) : 0.0, scoring, index,
           mon);
    for (size_t a = 0; tok && a < n_exact; a++)
        free(tok[a]);
    free(tok);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!(keep && *keep) && system(cmd) != 0)
        fprintf(stderr, "bench_serve: could not remove %s\n", dir);
    return 0;
}
