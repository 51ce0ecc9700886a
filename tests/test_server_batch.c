/*
 * test_server_batch.c - recommendations through the deferred gate of a live
 * server: while the audit writer is held after a commit, requests keep
 * arriving (more than the server has threads) and wait suspended; when it
 * goes on, their commit group is scored as one batch and each request gets
 * its own answer, byte for byte the one it gets alone; a model swap and a
 * server stop while requests are suspended neither crash nor hang. Every
 * wait is on a condition, with a bound.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "model/model_internal.h"
#include "server/server_internal.h"
#include "store/store_internal.h"
#include "t_http.h"

#include <privguide/audit.h>
#include <privguide/auth.h>
#include <privguide/model.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define N_USERS 24
#define N_TOK 12

typedef struct env {
    char dir[256], dd[300];
    char *admin, *tok[N_TOK];
    int port;
} env;
static env E;

static void put_event(pvg_store *s, const char *user, const char *item)
{
    pvg_event e;
    memset(&e, 0, sizeof e);
    e.type = PVG_EVENT_PURCHASE;
    e.item = item;
    e.ts = 1300000000;
    int outcome = 0;
    assert_int_equal(pvg_store_event_put(s, user, &e, NULL, &outcome, NULL), PVG_OK);
}

static void train_model(pvg_store *s, const char *path, int seed)
{
    pvg_dataset *ds = NULL;
    assert_int_equal(pvg_dataset_load_store(s, NULL, &ds, NULL, NULL), PVG_OK);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_IALS, &p);
    p.factors = 8;
    p.epochs = 3;
    p.seed = (uint64_t)seed;
    pvg_model *m = NULL;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, NULL), PVG_OK);
    assert_int_equal(pvg_model_save(m, path, NULL), PVG_OK);
    pvg_model_free(m);
    pvg_dataset_free(ds);
}

static int setup(void **state)
{
    (void)state;
    snprintf(E.dir, sizeof E.dir, "/tmp/pvg_test_server_batch_XXXXXX");
    if (!mkdtemp(E.dir)) return -1;
    snprintf(E.dd, sizeof E.dd, "%s/data", E.dir);
    if (pvg_store_init(E.dd, NULL, NULL) != PVG_OK) return -1;
    pvg_store *s = NULL;
    if (pvg_store_open(E.dd, &s, NULL) != PVG_OK) return -1;
    char item[16], user[16];
    for (int i = 0; i < 40; i++) {
        snprintf(item, sizeof item, "I%d", i);
        pvg_item it = {0, item, "thing", NULL, 1.0 + i, NULL, 0, -1};
        if (pvg_store_item_put(s, &it, NULL, NULL) != PVG_OK) return -1;
    }
    for (int u = 0; u < N_USERS; u++) {
        snprintf(user, sizeof user, "u%d", u);
        for (int j = 0; j < 4; j++) {
            snprintf(item, sizeof item, "I%d", (u % 4) * 10 + (u + 3 * j) % 10);
            put_event(s, user, item);
        }
        pvg_consent c = {u != 13, 1}; /* u13 does not consent to personalisation */
        assert_int_equal(pvg_store_consent_set(s, user, &c, NULL), PVG_OK);
    }
    char mp[340];
    snprintf(mp, sizeof mp, "%s/model.pvgm", E.dd);
    train_model(s, mp, 7);
    pvg_principal p;
    assert_int_equal(pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "t", 0, &E.admin, &p, NULL), PVG_OK);
    for (int u = 0; u < N_TOK; u++) {
        snprintf(user, sizeof user, "u%d", u);
        assert_int_equal(pvg_auth_token_issue(s, user, 3600, 0, &E.tok[u], &p, NULL), PVG_OK);
    }
    pvg_store_free(s);
    t_http_connect_to(&E.port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pvg_auth_credential_free(E.admin);
    for (int u = 0; u < N_TOK; u++)
        pvg_auth_credential_free(E.tok[u]);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", E.dir);
    return system(cmd) == 0 ? 0 : -1;
}

static pvg_server *start(void)
{
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = E.dd;
    o.threads = 2; /* fewer threads than requests in flight */
    o.cache_entries = -1;
    o.monitor_off = 1;
    o.auth_failure_rate = -1;
    o.reload_ms = 60000; /* reloads only when the test asks */
    pvg_server *srv = NULL;
    pvg_error err;
    pvg_status st = pvg_server_start(&o, &srv, &err);
    if (st != PVG_OK) fprintf(stderr, "start: %s\n", err.text);
    assert_int_equal(st, PVG_OK);
    E.port = pvg_server_port(srv);
    return srv;
}

/* ---- holding the audit writer after a commit ---- */

static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static int hold_armed, hold_held;

/* The writer's on_commit: the first commit after arming waits (before its
 * requests are woken) until the test lets it go. */
static void hold_hook(void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&hold_mu);
    if (hold_armed) {
        hold_armed = 0;
        hold_held = 1;
        pthread_cond_broadcast(&hold_cv);
        while (hold_held)
            pthread_cond_wait(&hold_cv, &hold_mu);
    }
    pthread_mutex_unlock(&hold_mu);
}

static void hold_arm(pvg_server *srv)
{
    pthread_mutex_lock(&srv->audit.mu);
    srv->audit.on_commit = hold_hook;
    pthread_mutex_unlock(&srv->audit.mu);
    pthread_mutex_lock(&hold_mu);
    hold_armed = 1;
    hold_held = 0;
    pthread_mutex_unlock(&hold_mu);
}

/* Waits (10 s at most) until the writer is held. */
static int hold_wait(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&hold_mu);
    int rc = 0;
    while (!hold_held && rc == 0)
        rc = pthread_cond_timedwait(&hold_cv, &hold_mu, &until);
    int held = hold_held;
    pthread_mutex_unlock(&hold_mu);
    return held;
}

static void hold_release(void)
{
    pthread_mutex_lock(&hold_mu);
    hold_armed = 0;
    hold_held = 0;
    pthread_cond_broadcast(&hold_cv);
    pthread_mutex_unlock(&hold_mu);
}

/* Entries queued since `base` reach `want` within 10 s (the requests are
 * in flight, each suspended with its entry queued): 1, else 0. */
static int wait_enqueued(pvg_server *srv, long long want)
{
    for (int i = 0; i < 10000; i++) {
        pthread_mutex_lock(&srv->audit.mu);
        long long q = srv->audit.enqueued;
        pthread_mutex_unlock(&srv->audit.mu);
        if (q >= want) return 1;
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static long long enqueued(pvg_server *srv)
{
    pthread_mutex_lock(&srv->audit.mu);
    long long q = srv->audit.enqueued;
    pthread_mutex_unlock(&srv->audit.mu);
    return q;
}

/* ---- clients ---- */

typedef struct client {
    pthread_t t;
    char path[128];
    const char *cred;
    int status;
    char *body;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    t_http_resp r = {0};
    c->status = t_http("GET", c->path, c->cred, NULL, &r) == 0 ? r.status : -1;
    c->body = r.body;
    return NULL;
}

static void client_start(client *c, const char *user, const char *cred)
{
    snprintf(c->path, sizeof c->path, "/v1/users/%s/recommendations?k=5", user);
    c->cred = cred;
    c->status = 0;
    c->body = NULL;
    assert_int_equal(pthread_create(&c->t, NULL, client_main, c), 0);
}

/* The answer the request gets alone. */
static char *alone(const char *user, const char *cred, int *status)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/users/%s/recommendations?k=5", user);
    t_http_resp r = {0};
    assert_int_equal(t_http("GET", path, cred, NULL, &r), 0);
    *status = r.status;
    return r.body;
}

/* More requests than the server has threads wait suspended while the
 * writer is held; the group committed next is scored as one batch, and
 * every request, personalised or refused, gets exactly the answer it gets
 * alone (one shopper's answer never reaches another request). */
static void test_commit_group_scored_as_one_batch(void **state)
{
    (void)state;
    pvg_server *srv = start();
    enum { N = 10 };
    const char *users[N];
    const char *creds[N];
    char names[N][16];
    for (int i = 0; i < N; i++) {
        /* u1..u8 with their own tokens; the admin for u13 (no consent) and
         * for a shopper nobody knows */
        snprintf(names[i], sizeof names[i], i < 8 ? "u%d" : i == 8 ? "u13" : "nobody", i + 1);
        users[i] = names[i];
        creds[i] = i < 8 ? E.tok[i + 1] : E.admin;
    }
    char *want[N];
    int wst[N];
    for (int i = 0; i < N; i++)
        want[i] = alone(users[i], creds[i], &wst[i]);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(wst[i], 200);
        assert_non_null(strstr(want[i], "\"personalized\":true"));
    }
    assert_null(strstr(want[8], "\"personalized\":true"));
    assert_null(strstr(want[9], "\"personalized\":true"));

    hold_arm(srv);
    client primer;
    client_start(&primer, "u0", E.tok[0]);
    assert_true(hold_wait()); /* u0's entry is committed; the writer waits */
    long long b0, j0, mb0;
    pvg_srv_model *sm = pvg_srv_model_acquire(srv);
    pvg_serve_stats(sm->model, &b0, &j0, &mb0);
    long long q0 = enqueued(srv);
    client c[N];
    for (int i = 0; i < N; i++)
        client_start(&c[i], users[i], creds[i]);
    /* all N are in flight at once with 2 server threads: none blocks one */
    int all_queued = wait_enqueued(srv, q0 + N);
    hold_release();
    pthread_join(primer.t, NULL);
    assert_int_equal(primer.status, 200);
    free(primer.body);
    for (int i = 0; i < N; i++)
        pthread_join(c[i].t, NULL);
    assert_true(all_queued);
    long long b1, j1, mb1;
    pvg_serve_stats(sm->model, &b1, &j1, &mb1);
    pvg_srv_model_release(sm);
    /* u0, then the 8 personalised of the next group in one batch (or all
     * nine together, when one finisher pass took both groups) */
    assert_int_equal(j1 - j0, 9);
    assert_true(mb1 >= 8);
    assert_true(b1 - b0 >= 1 && b1 - b0 <= 2);
    for (int i = 0; i < N; i++) {
        assert_int_equal(c[i].status, wst[i]);
        assert_non_null(c[i].body);
        assert_string_equal(c[i].body, want[i]);
        free(c[i].body);
        free(want[i]);
    }
    pvg_server_free(srv);
}

/* A model swap while requests wait suspended: they finish with the model
 * they began with (it stays alive while they hold it); later requests get
 * the new one. */
static void test_model_swap_while_suspended(void **state)
{
    (void)state;
    pvg_server *srv = start();
    long g0 = pvg_server_model_generation(srv);
    hold_arm(srv);
    client primer;
    client_start(&primer, "u0", E.tok[0]);
    assert_true(hold_wait());
    long long q0 = enqueued(srv);
    client c[6];
    for (int i = 0; i < 6; i++)
        client_start(&c[i], (const char[][4]){"u1", "u2", "u3", "u4", "u5", "u6"}[i], E.tok[i + 1]);
    int all_queued = wait_enqueued(srv, q0 + 6);
    /* a new model file, put in service now */
    char mp[340], tmp[360];
    snprintf(mp, sizeof mp, "%s/model.pvgm", E.dd);
    snprintf(tmp, sizeof tmp, "%s.new", mp);
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(E.dd, &s, NULL), PVG_OK);
    train_model(s, tmp, 11);
    pvg_store_free(s);
    assert_int_equal(rename(tmp, mp), 0);
    assert_int_equal(pvg_server_reload_model(srv, NULL), PVG_OK);
    long g1 = pvg_server_model_generation(srv);
    assert_true(g1 > g0);
    hold_release();
    pthread_join(primer.t, NULL);
    assert_int_equal(primer.status, 200);
    free(primer.body);
    char gen[64];
    snprintf(gen, sizeof gen, "\"model_generation\":%ld", g0);
    for (int i = 0; i < 6; i++) {
        pthread_join(c[i].t, NULL);
        assert_int_equal(c[i].status, 200);
        assert_non_null(strstr(c[i].body, gen));
        free(c[i].body);
    }
    assert_true(all_queued);
    int st;
    char *b = alone("u1", E.tok[1], &st);
    assert_int_equal(st, 200);
    snprintf(gen, sizeof gen, "\"model_generation\":%ld", g1);
    assert_non_null(strstr(b, gen));
    free(b);
    pvg_server_free(srv);
}

typedef struct stopper {
    pthread_t t;
    pvg_server *srv;
    atomic_int done;
} stopper;

static void *stop_main(void *arg)
{
    stopper *s = arg;
    pvg_status st = pvg_server_stop(s->srv, 0, NULL);
    s->done = st == PVG_OK ? 1 : 2;
    return NULL;
}

/* A stop while requests wait suspended: it waits for their answers (the
 * daemon never stops with a suspended connection) and then returns; every
 * request is answered. */
static void test_stop_while_suspended(void **state)
{
    (void)state;
    pvg_server *srv = start();
    hold_arm(srv);
    client primer;
    client_start(&primer, "u0", E.tok[0]);
    assert_true(hold_wait());
    long long q0 = enqueued(srv);
    client c[5];
    for (int i = 0; i < 5; i++)
        client_start(&c[i], (const char[][4]){"u1", "u2", "u3", "u4", "u5"}[i], E.tok[i + 1]);
    int all_queued = wait_enqueued(srv, q0 + 5);
    stopper sp;
    sp.srv = srv;
    atomic_init(&sp.done, 0);
    assert_int_equal(pthread_create(&sp.t, NULL, stop_main, &sp), 0);
    /* the stop has closed the deferred path and waits for the suspended */
    int closed = 0;
    for (int i = 0; i < 10000 && !closed; i++) {
        pthread_mutex_lock(&srv->fin_mu);
        closed = srv->fin_closed;
        pthread_mutex_unlock(&srv->fin_mu);
        if (!closed) {
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    assert_true(closed);
    assert_int_equal(atomic_load(&sp.done), 0); /* still waiting: the writer is held */
    hold_release();
    pthread_join(sp.t, NULL);
    assert_int_equal(atomic_load(&sp.done), 1);
    pthread_join(primer.t, NULL);
    assert_int_equal(primer.status, 200);
    free(primer.body);
    for (int i = 0; i < 5; i++) {
        pthread_join(c[i].t, NULL);
        assert_int_equal(c[i].status, 200);
        assert_non_null(strstr(c[i].body, "\"personalized\":true"));
        free(c[i].body);
    }
    assert_true(all_queued);
    pvg_server_free(srv);
}

/* ---- the audit writer's deferred WAL checkpoints ---- */

static long long wal_file_bytes(void)
{
    char p[340];
    snprintf(p, sizeof p, "%s/privguide.db-wal", E.dd);
    struct stat sb;
    return stat(p, &sb) == 0 ? (long long)sb.st_size : 0;
}

/* Appends n entries one commit each through a writer with the given
 * thresholds; returns the writer's counters in out[3] (side passes, own
 * passes, peak frames) and checks every entry is in the verified chain. */
static void wal_run(long long ckpt, long long reset, long long tail, long long max, int n,
                    long long out[3])
{
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(E.dd, &s, NULL), PVG_OK);
    /* an empty WAL to start from (earlier tests' servers leave theirs) */
    pvg_backend *sb = pvg_store_backend(s);
    assert_int_equal(sb->ops->checkpoint(sb, NULL), PVG_OK);
    pvg_srv_audit_store_prepare(s);
    pvg_srv_metrics m;
    memset(&m, 0, sizeof m);
    pvg_srv_audit_writer w;
    assert_int_equal(pvg_srv_audit_writer_start(&w, s, &m), 0);
    assert_true(w.ckpt_started);
    pthread_mutex_lock(&w.mu);
    w.wal_checkpoint_frames = ckpt;
    w.wal_reset_frames = reset;
    w.wal_tail_frames = tail;
    w.wal_max_frames = max;
    pthread_mutex_unlock(&w.mu);
    pvg_store *r = NULL;
    assert_int_equal(pvg_store_open(E.dd, &r, NULL), PVG_OK);
    pvg_audit_report rep;
    assert_int_equal(pvg_audit_verify(r, NULL, &rep, NULL), PVG_OK);
    long long before = rep.entries;
    char detail[64];
    for (int i = 0; i < n; i++) {
        snprintf(detail, sizeof detail, "entry %d of a long run", i);
        assert_int_equal(pvg_srv_audit_log(&w, "test", "wal_test", "subject", detail), PVG_OK);
    }
    pvg_srv_audit_writer_stop(&w);
    out[0] = w.wal_side_passes;
    out[1] = w.wal_own_passes;
    out[2] = w.wal_peak_frames;
    /* durable and whole: every entry in the chain, which verifies */
    assert_int_equal(pvg_audit_verify(r, NULL, &rep, NULL), PVG_OK);
    assert_int_equal(rep.entries, before + n);
    pvg_store_free(r);
    pvg_store_free(s);
}

/* The writer's commits do not checkpoint; side passes copy the WAL beside
 * them and the writer's short pass lets it restart: the WAL stays bounded
 * and every entry is there. */
static void test_wal_checkpoints_beside_commits(void **state)
{
    (void)state;
    long long c[3];
    wal_run(30, 150, 40, 600, 1500, c);
    assert_true(c[0] >= 1);       /* side passes ran */
    assert_true(c[1] >= 1);       /* the writer restarted the WAL */
    assert_true(c[2] < 600 + 16); /* one commit's frames past the bound at most (when
                                   * side passes, each with its fsyncs, fall behind) */
    /* the WAL file never held more than the peak (4 KiB pages, 24-byte
     * frame headers, a 32-byte file header) */
    assert_true(wal_file_bytes() <= 32 + (c[2] + 1) * (4096 + 24));
}

/* With no side pass ever asked for (and no restart by the tail rule), the
 * bound alone keeps the WAL from growing past wal_max_frames. */
static void test_wal_bounded_without_side_passes(void **state)
{
    (void)state;
    long long c[3];
    wal_run(1000000000LL, 1000000000LL, 0, 120, 1200, c);
    assert_int_equal(c[0], 0);
    assert_true(c[1] >= 2);
    assert_true(c[2] < 120 + 16); /* one commit's frames past the bound at most */
    assert_true(wal_file_bytes() <= 32 + (c[2] + 1) * (4096 + 24));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_group_scored_as_one_batch),
        cmocka_unit_test(test_model_swap_while_suspended),
        cmocka_unit_test(test_stop_while_suspended),
        cmocka_unit_test(test_wal_checkpoints_beside_commits),
        cmocka_unit_test(test_wal_bounded_without_side_passes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
