/*
 * alerts.c - access monitoring in the server: a monitor thread that tails
 * the audit log (woken by the audit writer after each commit, and once a
 * second for entries other processes wrote), reads new ledger charges and
 * the request observations the request threads queue (failed
 * authentications, the client address of each authenticated request), runs
 * the rule engine (include/privguide/monitor.h), stores the alerts, applies
 * their action (suspend in the store, or throttle in memory), counts them
 * for /metrics and POSTs them to the webhook; and the admin routes
 * /v1/admin/alerts... and /v1/admin/credentials/{id}/suspend|resume.
 * Nothing here runs on a request's path but a queue push under a mutex.
 */
#include "server/server_internal.h"

#include <privguide/ledger.h>
#include <privguide/monitor.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OBS_RING 4096
#define THROTTLE_MAX 64
#define MIN_PASS_S 0.05        /* at most 20 passes a second under load */
#define HISTORY_ENTRIES 200000 /* replayed at start to learn the baselines */

typedef struct obs {
    int64_t ts;
    char actor[48];
    char addr[24];
    int failed;
} obs;

typedef struct throttle {
    char id[PVG_AUTH_ID_HEX + 1];
    double rate, until;
} throttle;

struct pvg_srv_monitor {
    pvg_server *srv;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    obs *ring;
    size_t head, n;
    int kicked, stop;
    pthread_t thread;
    int started;
    pvg_monitor *m;
    pvg_store *store;    /* the thread's own connection */
    pthread_mutex_t smu; /* held while the thread uses store (a key rotation reopens it) */
    long long counts[PVG_MON_N_RULES];
    atomic_llong dropped, webhook_sent, webhook_failures, store_failures;
    atomic_llong cpu_ns; /* the monitor thread's CPU time */
    char *wh_host, *wh_port, *wh_path;
    /* throttles: key id -> rate, until (monotonic seconds) */
    pthread_mutex_t tmu;
    throttle thr[THROTTLE_MAX];
    atomic_int n_thr;
    long long ledger_releases; /* releases in the ledger at the last read */
};

/* ---- the request side ----------------------------------------------------- */

void pvg_srv_monitor_observe(pvg_server *srv, const char *actor, const char *addr, int failed)
{
    pvg_srv_monitor *mo = srv->monitor;
    if (!mo) return;
    pthread_mutex_lock(&mo->mu);
    if (mo->n == OBS_RING) {
        pthread_mutex_unlock(&mo->mu);
        atomic_fetch_add(&mo->dropped, 1);
        return;
    }
    obs *o = &mo->ring[(mo->head + mo->n) % OBS_RING];
    o->ts = (int64_t)time(NULL);
    snprintf(o->actor, sizeof o->actor, "%s", actor ? actor : "");
    snprintf(o->addr, sizeof o->addr, "%s", addr ? addr : "");
    o->failed = failed;
    mo->n++;
    if (failed || mo->n >= OBS_RING / 2) pthread_cond_signal(&mo->cv);
    pthread_mutex_unlock(&mo->mu);
}

void pvg_srv_monitor_kick(void *ctx)
{
    pvg_srv_monitor *mo = ctx;
    pthread_mutex_lock(&mo->mu);
    mo->kicked = 1;
    pthread_cond_signal(&mo->cv);
    pthread_mutex_unlock(&mo->mu);
}

double pvg_srv_monitor_rate(pvg_server *srv, const char *key_id, double rate)
{
    pvg_srv_monitor *mo = srv->monitor;
    if (!mo || atomic_load(&mo->n_thr) == 0) return rate;
    double now = pvg_srv_now(), out = rate;
    pthread_mutex_lock(&mo->tmu);
    for (int i = 0; i < THROTTLE_MAX; i++)
        if (mo->thr[i].id[0] && strcmp(mo->thr[i].id, key_id) == 0 && now < mo->thr[i].until)
            out = rate > 0 && rate < mo->thr[i].rate ? rate : mo->thr[i].rate;
    pthread_mutex_unlock(&mo->tmu);
    return out;
}

static void throttle_set(pvg_srv_monitor *mo, const char *id, double rate, double seconds)
{
    double now = pvg_srv_now();
    pthread_mutex_lock(&mo->tmu);
    int slot = 0;
    double oldest = 1e300;
    for (int i = 0; i < THROTTLE_MAX; i++) {
        if (strcmp(mo->thr[i].id, id) == 0 || !mo->thr[i].id[0] || mo->thr[i].until < now) {
            slot = i;
            break;
        }
        if (mo->thr[i].until < oldest) {
            oldest = mo->thr[i].until;
            slot = i;
        }
    }
    snprintf(mo->thr[slot].id, sizeof mo->thr[slot].id, "%s", id);
    mo->thr[slot].rate = rate;
    mo->thr[slot].until = now + seconds;
    int n = 0;
    for (int i = 0; i < THROTTLE_MAX; i++)
        n += mo->thr[i].id[0] && mo->thr[i].until > now;
    atomic_store(&mo->n_thr, n);
    pthread_mutex_unlock(&mo->tmu);
}

static void throttle_clear(pvg_srv_monitor *mo, const char *id)
{
    pthread_mutex_lock(&mo->tmu);
    for (int i = 0; i < THROTTLE_MAX; i++)
        if (strcmp(mo->thr[i].id, id) == 0) memset(&mo->thr[i], 0, sizeof mo->thr[i]);
    pthread_mutex_unlock(&mo->tmu);
}

/* ---- the webhook --------------------------------------------------------------- */

/* Parses http://host[:port]/path. 0 ok. */
static int webhook_parse(pvg_srv_monitor *mo, const char *url)
{
    if (strncmp(url, "http://", 7) != 0) return -1;
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    char hostport[300];
    if (hl == 0 || hl >= sizeof hostport) return -1;
    memcpy(hostport, h, hl);
    hostport[hl] = 0;
    char *colon = strrchr(hostport, ':');
    const char *port = "80";
    if (colon) {
        *colon = 0;
        port = colon + 1;
        if (!*port || strspn(port, "0123456789") != strlen(port)) return -1;
    }
    mo->wh_host = strdup(hostport);
    mo->wh_port = strdup(port);
    mo->wh_path = strdup(slash ? slash : "/");
    return mo->wh_host && mo->wh_port && mo->wh_path ? 0 : -1;
}

/* POSTs body to the webhook with a 2 s timeout on each step. 0 when the
 * answer is 2xx. */
static int webhook_post(pvg_srv_monitor *mo, const char *body)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(mo->wh_host, mo->wh_port, &hints, &ai) != 0 || !ai) return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ok = -1;
    if (fd >= 0) {
        struct timeval tv = {2, 0};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        int fl = fcntl(fd, F_GETFL, 0);
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        int c = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (c != 0 && errno == EINPROGRESS) {
            struct pollfd p = {fd, POLLOUT, 0};
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            c = poll(&p, 1, 2000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
                        soerr == 0
                    ? 0
                    : -1;
        }
        fcntl(fd, F_SETFL, fl);
        if (c == 0) {
            char head[600];
            size_t bl = strlen(body);
            int hn = snprintf(head, sizeof head,
                              "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: "
                              "application/json\r\nContent-Length: %zu\r\nConnection: "
                              "close\r\nUser-Agent: privguide-monitor\r\n\r\n",
                              mo->wh_path, mo->wh_host, mo->wh_port, bl);
            if (hn > 0 && (size_t)hn < sizeof head &&
                send(fd, head, (size_t)hn, MSG_NOSIGNAL) == hn &&
                send(fd, body, bl, MSG_NOSIGNAL) == (ssize_t)bl) {
                char ans[64];
                ssize_t got = recv(fd, ans, sizeof ans - 1, 0);
                if (got >= 12) {
                    ans[got] = 0;
                    ok = strncmp(ans, "HTTP/1.", 7) == 0 && ans[9] == '2' ? 0 : -1;
                }
            }
        }
        close(fd);
    }
    freeaddrinfo(ai);
    return ok;
}

/* ---- the monitor thread ------------------------------------------------------- */

static int feed_entry(void *ctx, const pvg_audit_entry *e)
{
    pvg_srv_monitor *mo = ctx;
    (void)pvg_monitor_feed_audit(mo->m, e); /* -1: the rules that could not grow skip it */
    return 0;
}

static int feed_release(void *ctx, const pvg_ledger_release *r)
{
    pvg_srv_monitor *mo = ctx;
    (void)pvg_monitor_feed_charge(mo->m, r->id, r->created_at, r->epsilon);
    return 0;
}

static void tail_ledger(pvg_srv_monitor *mo)
{
    pvg_ledger_state ls;
    if (pvg_ledger_state_get(mo->store, &ls, NULL) == PVG_OK) {
        if (ls.has_total) pvg_monitor_set_budget_total(mo->m, ls.total_epsilon);
    } else
        return;
    if (ls.releases != mo->ledger_releases &&
        pvg_ledger_releases_foreach(mo->store, NULL, feed_release, mo, NULL) == PVG_OK)
        mo->ledger_releases = ls.releases;
}

/* Stores an alert after applying its action; counts it; posts it. */
static void handle_alert(pvg_srv_monitor *mo, pvg_monitor_alert *a)
{
    const char *id = strchr(a->credential, ':');
    id = id ? id + 1 : NULL;
    if (a->action == PVG_MON_ACT_SUSPEND && id) {
        char why[120];
        snprintf(why, sizeof why, "access monitoring, rule %s", pvg_monitor_rule_name(a->rule));
        pvg_status st = PVG_ERR_BUSY;
        for (int attempt = 0; attempt < 5 && st == PVG_ERR_BUSY; attempt++)
            st = pvg_monitor_suspend(mo->store, id, "monitor", why, NULL);
        if (st == PVG_OK)
            pvg_srv_authcache_clear(mo->srv->authcache); /* at once, in this server */
        else
            a->action = PVG_MON_ACT_NONE;
    } else if (a->action == PVG_MON_ACT_RATE_LIMIT && id) {
        double rate = 1; /* requests per second kept for an hour */
        throttle_set(mo, id, rate, 3600);
    } else {
        a->action = PVG_MON_ACT_NONE;
    }
    int is_new = 0;
    pvg_status st = PVG_ERR_BUSY;
    for (int attempt = 0; attempt < 5 && st == PVG_ERR_BUSY; attempt++)
        st = pvg_monitor_alert_store(mo->store, a, &is_new, NULL);
    if (st != PVG_OK) atomic_fetch_add(&mo->store_failures, 1);
    if (mo->wh_host) {
        char *j = pvg_monitor_alert_json(a);
        if (j && webhook_post(mo, j) == 0)
            atomic_fetch_add(&mo->webhook_sent, 1);
        else
            atomic_fetch_add(&mo->webhook_failures, 1);
        free(j);
    }
}

static void *monitor_main(void *arg)
{
    pvg_srv_monitor *mo = arg;
    /* learn from the recent history without raising anything */
    pthread_mutex_lock(&mo->smu);
    pvg_audit_head_info head;
    if (pvg_audit_head(mo->store, &head, NULL) == PVG_OK && head.seq > 0) {
        pvg_monitor_set_learning(mo->m, 1);
        int64_t from = head.seq > HISTORY_ENTRIES ? head.seq - HISTORY_ENTRIES : 1;
        pvg_status st =
            pvg_audit_foreach(mo->store, from, head.seq - from + 1, feed_entry, mo, NULL);
        (void)st; /* a read error: the baselines start from less history */
        tail_ledger(mo);
        pvg_monitor_set_learning(mo->m, 0);
    } else {
        pvg_monitor_set_learning(mo->m, 1);
        tail_ledger(mo);
        pvg_monitor_set_learning(mo->m, 0);
    }
    pthread_mutex_unlock(&mo->smu);
    obs *batch = malloc(OBS_RING * sizeof *batch);
    struct timespec cpu0;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
    double last_ledger = pvg_srv_now(), last_pass = 0;
    pthread_mutex_lock(&mo->mu);
    while (!mo->stop && batch) {
        if (!mo->kicked && mo->n == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&mo->cv, &mo->mu, &ts);
            if (mo->stop) break;
        }
        double now = pvg_srv_now();
        if (now - last_pass < MIN_PASS_S) { /* batch the work of a busy second */
            pthread_mutex_unlock(&mo->mu);
            struct timespec d = {0, (long)((MIN_PASS_S - (now - last_pass)) * 1e9)};
            nanosleep(&d, NULL);
            pthread_mutex_lock(&mo->mu);
            if (mo->stop) break;
        }
        size_t n = mo->n;
        for (size_t i = 0; i < n; i++)
            batch[i] = mo->ring[(mo->head + i) % OBS_RING];
        mo->head = (mo->head + n) % OBS_RING;
        mo->n = 0;
        mo->kicked = 0;
        pthread_mutex_unlock(&mo->mu);

        last_pass = pvg_srv_now();
        pthread_mutex_lock(&mo->smu);
        for (size_t i = 0; i < n; i++) {
            pvg_monitor_request q = {batch[i].ts, batch[i].actor,
                                     batch[i].addr[0] ? batch[i].addr : NULL, batch[i].failed};
            (void)pvg_monitor_feed_request(mo->m, &q);
        }
        pvg_status st =
            pvg_audit_foreach(mo->store, pvg_monitor_last_seq(mo->m) + 1, 0, feed_entry, mo, NULL);
        (void)st; /* a read error (busy): the next pass reads from the same place */
        if (last_pass - last_ledger >= 1.0) {
            tail_ledger(mo);
            last_ledger = last_pass;
        }
        pvg_monitor_alert a;
        while (pvg_monitor_next_alert(mo->m, &a))
            handle_alert(mo, &a);
        pthread_mutex_unlock(&mo->smu);
        long long counts[PVG_MON_N_RULES];
        pvg_monitor_counts(mo->m, counts);
        struct timespec cpu1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
        atomic_store(&mo->cpu_ns, (long long)(cpu1.tv_sec - cpu0.tv_sec) * 1000000000LL +
                                      (cpu1.tv_nsec - cpu0.tv_nsec));
        pthread_mutex_lock(&mo->mu);
        memcpy(mo->counts, counts, sizeof counts);
    }
    pthread_mutex_unlock(&mo->mu);
    free(batch);
    return NULL;
}

pvg_status pvg_srv_monitor_start(pvg_server *srv, pvg_error *err)
{
    pvg_srv_monitor *mo = calloc(1, sizeof *mo);
    if (!mo) return pvg_error_set(err, PVG_ERR_NOMEM, "monitor: out of memory");
    mo->srv = srv;
    pthread_mutex_init(&mo->mu, NULL);
    pthread_mutex_init(&mo->tmu, NULL);
    pthread_mutex_init(&mo->smu, NULL);
    pthread_cond_init(&mo->cv, NULL);
    srv->monitor = mo;
    mo->ring = calloc(OBS_RING, sizeof *mo->ring);
    if (!mo->ring) return pvg_error_set(err, PVG_ERR_NOMEM, "monitor: out of memory");
    if (srv->opt.alert_url && webhook_parse(mo, srv->opt.alert_url))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "alert webhook: want http://host[:port]/path, got \"%.100s\"",
                             srv->opt.alert_url);
    pvg_status st = pvg_store_open(srv->data_dir, &mo->store, err);
    if (st != PVG_OK) return st;
    pvg_srv_store_prepare(mo->store); /* as after a key rotation's reopen */
    st = pvg_monitor_new(NULL, &mo->m, err);
    if (st != PVG_OK) return st;
    if (pthread_create(&mo->thread, NULL, monitor_main, mo) != 0)
        return pvg_error_set(err, PVG_ERR_INTERNAL, "monitor: cannot start its thread");
    mo->started = 1;
    return PVG_OK;
}

void pvg_srv_monitor_stop(pvg_server *srv)
{
    pvg_srv_monitor *mo = srv->monitor;
    if (!mo || !mo->started) return;
    pthread_mutex_lock(&mo->mu);
    mo->stop = 1;
    pthread_cond_signal(&mo->cv);
    pthread_mutex_unlock(&mo->mu);
    pthread_join(mo->thread, NULL);
    mo->started = 0;
}

void pvg_srv_monitor_free(pvg_server *srv)
{
    pvg_srv_monitor *mo = srv->monitor;
    if (!mo) return;
    pvg_srv_monitor_stop(srv);
    pvg_monitor_free(mo->m);
    pvg_store_free(mo->store);
    free(mo->ring);
    free(mo->wh_host);
    free(mo->wh_port);
    free(mo->wh_path);
    pthread_mutex_destroy(&mo->mu);
    pthread_mutex_destroy(&mo->tmu);
    pthread_mutex_destroy(&mo->smu);
    pthread_cond_destroy(&mo->cv);
    free(mo);
    srv->monitor = NULL;
}

pvg_store **pvg_srv_monitor_hold(pvg_server *srv)
{
    pvg_srv_monitor *mo = srv->monitor;
    if (!mo || !mo->store) return NULL;
    pthread_mutex_lock(&mo->smu);
    return &mo->store;
}

void pvg_srv_monitor_release(pvg_server *srv)
{
    pthread_mutex_unlock(&srv->monitor->smu);
}

void pvg_srv_monitor_metrics(pvg_server *srv, char *buf, size_t len)
{
    pvg_srv_monitor *mo = srv->monitor;
    size_t o = 0;
    buf[0] = 0;
    if (!mo) return;
    long long counts[PVG_MON_N_RULES];
    pthread_mutex_lock(&mo->mu);
    memcpy(counts, mo->counts, sizeof counts);
    pthread_mutex_unlock(&mo->mu);
    o += (size_t)snprintf(buf + o, len - o,
                          "# HELP privguide_alerts_total Alerts raised by access monitoring in "
                          "this server, by rule.\n# TYPE privguide_alerts_total counter\n");
    for (int r = 0; r < PVG_MON_N_RULES && o < len; r++)
        o += (size_t)snprintf(buf + o, len - o, "privguide_alerts_total{rule=\"%s\"} %lld\n",
                              pvg_monitor_rule_name((pvg_monitor_rule)r), counts[r]);
    if (o < len)
        o += (size_t)snprintf(
            buf + o, len - o,
            "# HELP privguide_alert_webhook_total Alerts posted to the webhook, by outcome.\n"
            "# TYPE privguide_alert_webhook_total counter\n"
            "privguide_alert_webhook_total{outcome=\"sent\"} %lld\n"
            "privguide_alert_webhook_total{outcome=\"failed\"} %lld\n"
            "# HELP privguide_monitor_dropped_total Request observations dropped (queue full).\n"
            "# TYPE privguide_monitor_dropped_total counter\nprivguide_monitor_dropped_total "
            "%lld\n"
            "# HELP privguide_monitor_store_failures_total Alerts that could not be stored.\n"
            "# TYPE privguide_monitor_store_failures_total counter\n"
            "privguide_monitor_store_failures_total %lld\n"
            "# HELP privguide_monitor_cpu_seconds_total CPU time of the monitor thread.\n"
            "# TYPE privguide_monitor_cpu_seconds_total counter\n"
            "privguide_monitor_cpu_seconds_total %.6f\n",
            (long long)atomic_load(&mo->webhook_sent),
            (long long)atomic_load(&mo->webhook_failures), (long long)atomic_load(&mo->dropped),
            (long long)atomic_load(&mo->store_failures), (double)atomic_load(&mo->cpu_ns) / 1e9);
}

/* ---- the admin routes ---------------------------------------------------------- */

static int alert_to_array(void *ctx, const pvg_monitor_alert *a)
{
    char *j = pvg_monitor_alert_json(a);
    json_t *o = j ? json_loads(j, 0, NULL) : NULL;
    free(j);
    if (o) {
        json_object_del(o, "count");
        json_object_del(o, "threshold");
        json_array_append_new(ctx, o);
    }
    return 0;
}

void pvg_srv_h_alerts(pvg_srv_req *r)
{
    const char *state = pvg_srv_req_query(r, "state");
    int all = 0;
    if (state && strcmp(state, "all") == 0)
        all = 1;
    else if (state && strcmp(state, "open") != 0) {
        pvg_srv_reply_error(r, 400, "invalid",
                            "query parameter state: want \"open\" or \"all\", got \"%.40s\"",
                            state);
        return;
    }
    json_t *arr = json_array();
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_monitor_alerts_foreach(pvg_srv_req_store(r), all, alert_to_array, arr, &e);
    if (st != PVG_OK) {
        json_decref(arr);
        pvg_srv_reply_status(r, "alerts", st, &e);
        return;
    }
    pvg_srv_reply_json(r, 200, json_pack("{s:o}", "alerts", arr));
}

void pvg_srv_h_alert_ack(pvg_srv_req *r)
{
    char *end = NULL;
    errno = 0;
    long long id = strtoll(r->params[0], &end, 10);
    if (errno || end == r->params[0] || *end || id <= 0) {
        pvg_srv_reply_error(r, 400, "invalid", "alert id: want a positive integer, got \"%.40s\"",
                            r->params[0]);
        return;
    }
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_monitor_alert_ack(pvg_srv_req_store(r), id, r->actor, &e);
    if (st != PVG_OK) {
        pvg_srv_reply_status(r, "alert ack", st, &e);
        return;
    }
    pvg_srv_reply_json(r, 200,
                       json_pack("{s:I, s:s}", "id", (json_int_t)id, "state", "acknowledged"));
}

static void cred_action(pvg_srv_req *r, int suspend)
{
    const char *id = r->params[0];
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = suspend
                        ? pvg_monitor_suspend(pvg_srv_req_store(r), id, r->actor, "by an admin", &e)
                        : pvg_monitor_resume(pvg_srv_req_store(r), id, r->actor, &e);
    if (st == PVG_ERR_STATE) {
        pvg_srv_reply_error(r, 409, "conflict", "%s", e.text);
        return;
    }
    if (st != PVG_OK) {
        pvg_srv_reply_status(r, suspend ? "suspend" : "resume", st, &e);
        return;
    }
    pvg_srv_authcache_clear(r->srv->authcache);
    if (!suspend && r->srv->monitor) throttle_clear(r->srv->monitor, id);
    pvg_srv_reply_json(
        r, 200,
        json_pack("{s:s, s:s}", "credential", id, "state", suspend ? "suspended" : "active"));
}

void pvg_srv_h_cred_suspend(pvg_srv_req *r)
{
    cred_action(r, 1);
}

void pvg_srv_h_cred_resume(pvg_srv_req *r)
{
    cred_action(r, 0);
}
