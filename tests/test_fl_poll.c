/*
 * test_fl_poll.c - long polling of the federated round's STATE
 * (GET /v1/fl/state?wait=1.ROUND.PHASE.MS, docs/fl-protocol.md): the server
 * in-process on an ephemeral port, polls over real HTTP from threads.
 *
 * - a parked poll wakes on the phase change, with the new (round, phase),
 *   long before its wait ends;
 * - a wait without a change ends with the same state, flagged "waited"; a
 *   plain poll (an older client) never sees the flag;
 * - the cap on parked polls (503), one wait per client (a second one ends
 *   the first);
 * - a server stopping with parked polls answers them and stops promptly;
 * - a malformed wait field: 400 naming the field and the byte offset;
 * - the liveness rule: a cohort client parked in a long poll is not silent,
 *   so the grace does not close a phase under it; once it stops, it does;
 * - the C client long-polls (a handful of requests through an idle second
 *   and a round) beside a plain-polling one in the same round.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/fl_net.h>
#include <privguide/secagg.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include "t_fl_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static t_fl_env E;

static int setup(void **state)
{
    (void)state;
    return t_fl_env_setup(&E, "pvg_test_flpoll", 6);
}

static int teardown(void **state)
{
    (void)state;
    return t_fl_env_teardown(&E);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A coordinator of d = 4 words, no round before min_clients joined, long
 * deadlines (a phase ends only when its messages are in), grace as given. */
static pvg_fl_coord *coord_new(pvg_rng *rng, uint32_t min_clients, double grace, uint32_t max_waits)
{
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = 4;
    co.sample_rate = 1.0;
    co.min_clients = min_clients;
    co.max_rounds = 1;
    co.phase_grace = grace;
    co.max_waits = max_waits;
    for (int i = 0; i < 4; i++)
        co.phase_seconds[i] = 600;
    co.rng = rng;
    pvg_fl_coord *c = NULL;
    pvg_error err;
    assert_int_equal(pvg_fl_coord_new(&co, &c, &err), PVG_OK);
    return c;
}

/* An answer with its body as bytes (STATE bodies hold zeros). */
typedef struct hresp {
    int status;
    uint8_t *body; /* new, NUL-terminated after len */
    size_t len;
    char headers[4096];
} hresp;

static void hresp_free(hresp *r)
{
    free(r->body);
    r->body = NULL;
}

/* One request to the server (Connection: close; 12 s receive timeout, above
 * the waits the tests ask for). 0, or -1 when no answer came. */
static int req(const char *method, const char *path, const char *tok, const uint8_t *body,
               size_t blen, hresp *out)
{
    memset(out, 0, sizeof *out);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {12, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)E.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    char hdr[1024];
    int hl = snprintf(hdr, sizeof hdr,
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                      "Authorization: Bearer %s\r\nContent-Type: application/octet-stream\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      method, path, tok, blen);
    size_t rl = (size_t)hl + blen, off = 0;
    char *raw = malloc(rl);
    assert_non_null(raw);
    memcpy(raw, hdr, (size_t)hl);
    if (blen) memcpy(raw + hl, body, blen);
    while (off < rl) {
        ssize_t k = send(fd, raw + off, rl - off, MSG_NOSIGNAL);
        if (k <= 0) break;
        off += (size_t)k;
    }
    free(raw);
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k <= 0) break;
        n += (size_t)k;
    }
    close(fd);
    buf[n] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1 || !sep) {
        free(buf);
        return -1;
    }
    size_t hlen = (size_t)(sep - buf);
    memcpy(out->headers, buf, hlen < sizeof out->headers ? hlen : sizeof out->headers - 1);
    out->len = n - hlen - 4;
    out->body = malloc(out->len + 1);
    assert_non_null(out->body);
    memcpy(out->body, sep + 4, out->len);
    out->body[out->len] = 0;
    free(buf);
    return 0;
}

/* Whether the header block holds line (case-insensitive, at a line start). */
static int has_header(const hresp *r, const char *line)
{
    const char *h = r->headers;
    size_t n = strlen(line);
    for (const char *p = h; *p; p++)
        if ((p == h || p[-1] == '\n') && strncasecmp(p, line, n) == 0) return 1;
    return 0;
}

/* Parses an answer's STATE (asserts it is one). */
static void state_of(const hresp *r, pvg_fl_state *st)
{
    if (r->status != 200) fail_msg("HTTP %d: %s", r->status, (const char *)r->body);
    pvg_error err;
    assert_int_equal(pvg_fl_state_parse(r->body, r->len, st, &err), PVG_OK);
}

static void join(int i)
{
    hresp r;
    assert_int_equal(req("POST", "/v1/fl/join", E.tok[i], NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
}

/* ---- a poll in a thread ---- */
typedef struct poll_job {
    int client;
    char path[128];
    pthread_t th;
    int rc;
    hresp r;
    double seconds;
} poll_job;

static void *poll_main(void *arg)
{
    poll_job *j = arg;
    double t0 = now_s();
    j->rc = req("GET", j->path, E.tok[j->client], NULL, 0, &j->r);
    j->seconds = now_s() - t0;
    return NULL;
}

static void poll_start(poll_job *j, int client, uint64_t round, int phase, unsigned ms)
{
    memset(j, 0, sizeof *j);
    j->client = client;
    snprintf(j->path, sizeof j->path, "/v1/fl/state?wait=1.%llu.%d.%u", (unsigned long long)round,
             phase, ms);
    assert_int_equal(pthread_create(&j->th, NULL, poll_main, j), 0);
}

static void poll_join(poll_job *j)
{
    assert_int_equal(pthread_join(j->th, NULL), 0);
    assert_int_equal(j->rc, 0);
}

/* Waits until n polls are parked at the coordinator (a condition, not a
 * time: 20 s only as a failure bound). */
static void until_parked(pvg_fl_coord *c, uint32_t n)
{
    double t0 = now_s();
    struct timespec nap = {0, 2 * 1000000L};
    while (pvg_fl_coord_parked(c) != n) {
        if (now_s() - t0 > 20) fail_msg("%u polls parked, %u expected", pvg_fl_coord_parked(c), n);
        nanosleep(&nap, NULL);
    }
}

/* ---- a parked poll wakes on the change ---- */
static void test_parked_poll_wakes_on_phase_change(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord *coord = coord_new(rng, 3, 0, 0);
    pvg_server *srv = t_fl_server_start(&E, coord);
    join(0);
    join(1);
    /* round 0, idle: client 0 waits up to 8 s for a change */
    poll_job j;
    poll_start(&j, 0, 0, PVG_FL_PHASE_IDLE, 8000);
    until_parked(coord, 1);
    double t_change = now_s();
    join(2); /* the third client: round 1 starts, its advertise phase opens */
    poll_join(&j);
    pvg_fl_state st;
    state_of(&j.r, &st);
    /* it woke because of the change: the answer carries the new round and phase */
    assert_int_equal(st.waited, 1);
    assert_int_equal(st.round, 1);
    assert_int_equal(st.phase, PVG_FL_PHASE_ADVERTISE);
    assert_true(st.id < 3);
    assert_true(now_s() - t_change < 8.0);
    hresp_free(&j.r);
    assert_int_equal(pvg_fl_coord_parked(coord), 0);

    /* a wait for a state the client did not see (stale round or phase) is answered
       at once, with the current state */
    poll_start(&j, 1, 0, PVG_FL_PHASE_IDLE, 8000);
    poll_join(&j);
    state_of(&j.r, &st);
    assert_int_equal(st.waited, 1);
    assert_int_equal(st.phase, PVG_FL_PHASE_ADVERTISE);
    hresp_free(&j.r);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    pvg_rng_free(rng);
}

/* ---- a wait that ends without a change ---- */
static void test_wait_ends_without_change(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord *coord = coord_new(rng, 16, 0, 0); /* no round starts */
    pvg_server *srv = t_fl_server_start(&E, coord);
    join(0);
    poll_job j;
    poll_start(&j, 0, 0, PVG_FL_PHASE_IDLE, 300);
    poll_join(&j);
    pvg_fl_state st;
    state_of(&j.r, &st);
    assert_int_equal(st.waited, 1);
    assert_int_equal(st.round, 0);
    assert_int_equal(st.phase, PVG_FL_PHASE_IDLE);
    assert_true(j.seconds >= 0.29); /* it waited its 300 ms */
    hresp_free(&j.r);
    /* wait 0: at once, flagged */
    poll_start(&j, 0, 0, PVG_FL_PHASE_IDLE, 0);
    poll_join(&j);
    state_of(&j.r, &st);
    assert_int_equal(st.waited, 1);
    hresp_free(&j.r);
    /* an older client's plain poll: the same STATE, never the flag (its strict parser
       refuses flag bit 2) */
    hresp r;
    assert_int_equal(req("GET", "/v1/fl/state", E.tok[0], NULL, 0, &r), 0);
    state_of(&r, &st);
    assert_int_equal(st.waited, 0);
    assert_int_equal(r.body[17], 0);
    hresp_free(&r);
    /* a shopper who never joined cannot park */
    assert_int_equal(req("GET", "/v1/fl/state?wait=1.0.0.5000", E.tok[5], NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    hresp_free(&r);
    assert_int_equal(pvg_fl_coord_parked(coord), 0);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    pvg_rng_free(rng);
}

/* ---- the cap, one wait per client ---- */
static void test_parked_polls_are_bounded(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord *coord = coord_new(rng, 16, 0, 2); /* at most 2 parked */
    pvg_server *srv = t_fl_server_start(&E, coord);
    for (int i = 0; i < 3; i++)
        join(i);
    poll_job a, b;
    poll_start(&a, 0, 0, PVG_FL_PHASE_IDLE, 8000);
    poll_start(&b, 1, 0, PVG_FL_PHASE_IDLE, 8000);
    until_parked(coord, 2);
    /* a third: 503 with Retry-After and a message saying why */
    hresp r;
    assert_int_equal(req("GET", "/v1/fl/state?wait=1.0.0.8000", E.tok[2], NULL, 0, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr((const char *)r.body, "long polls are parked"));
    assert_true(has_header(&r, "Retry-After: 1"));
    hresp_free(&r);
    /* it may still poll without waiting */
    assert_int_equal(req("GET", "/v1/fl/state", E.tok[2], NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    /* client 0 waits again (its first connection given up): the first wait is answered at
       once and the new one parked in its place; still 2 parked */
    poll_job a2;
    double t0 = now_s();
    poll_start(&a2, 0, 0, PVG_FL_PHASE_IDLE, 8000);
    poll_join(&a);
    assert_true(now_s() - t0 < 7.0);
    pvg_fl_state st;
    state_of(&a.r, &st);
    assert_int_equal(st.waited, 1);
    assert_int_equal(st.phase, PVG_FL_PHASE_IDLE);
    hresp_free(&a.r);
    until_parked(coord, 2);
    /* the server stops: both parked polls are answered */
    pvg_server_free(srv);
    poll_join(&a2);
    poll_join(&b);
    state_of(&a2.r, &st);
    state_of(&b.r, &st);
    hresp_free(&a2.r);
    hresp_free(&b.r);
    assert_int_equal(pvg_fl_coord_parked(coord), 0);
    pvg_fl_coord_free(coord);
    pvg_rng_free(rng);
}

/* ---- stop with parked polls ---- */
static void test_stop_answers_parked_polls(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord *coord = coord_new(rng, 16, 0, 0);
    pvg_server *srv = t_fl_server_start(&E, coord);
    enum { N = 4 };
    poll_job j[N];
    for (int i = 0; i < N; i++) {
        join(i);
        poll_start(&j[i], i, 0, PVG_FL_PHASE_IDLE, 25000);
    }
    until_parked(coord, N);
    double t0 = now_s();
    pvg_error err;
    /* a drain of 20 s: the stop must not wait it out, nor the polls' 25 s (10 s
       leaves a loaded machine's scheduling far more than it needs) */
    assert_int_equal(pvg_server_stop(srv, 20000, &err), PVG_OK);
    double took = now_s() - t0;
    assert_true(took < 10.0);
    for (int i = 0; i < N; i++) {
        poll_join(&j[i]);
        pvg_fl_state st;
        state_of(&j[i].r, &st);
        assert_int_equal(st.waited, 1);
        assert_true(j[i].seconds < 20.0);
        assert_true(has_header(&j[i].r, "Connection: close"));
        hresp_free(&j[i].r);
    }
    assert_int_equal(pvg_fl_coord_parked(coord), 0);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    pvg_rng_free(rng);
}

/* ---- a malformed wait field ---- */
static void test_wait_field_malformed(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord *coord = coord_new(rng, 16, 0, 0);
    pvg_server *srv = t_fl_server_start(&E, coord);
    join(0);
    static const struct {
        const char *v;
        int byte;
        const char *what;
    } bad[] = {
        {"", 0, "the version 1"},
        {"2.0.0.100", 0, "the version 1"},
        {"01.0.0.100", 1, "the version 1"},
        {"1", 1, "the version 1"},
        {"1.", 2, "the round"},
        {"1.x.0.100", 2, "the round"},
        {"1.00.0.100", 3, "the round"},
        {"1.18446744073709551616.0.1", 21, "the round"},
        {"1.0.8.100", 4, "the phase"},
        {"1.0.12.100", 5, "the phase"},
        {"1.0.0", 5, "the phase"},
        {"1.0.0.", 6, "the longest wait"},
        {"1.0.0.100x", 9, "the longest wait"},
        {"1.0.0.-1", 6, "the longest wait"},
        {"1.0.0.4294967296", 15, "the longest wait"},
        {"1.0.0.100.5", 9, "the longest wait"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[128], want[64];
        snprintf(path, sizeof path, "/v1/fl/state?wait=%s", bad[i].v);
        hresp r;
        assert_int_equal(req("GET", path, E.tok[0], NULL, 0, &r), 0);
        if (r.status != 400 || !strstr((const char *)r.body, "query parameter wait"))
            fail_msg("wait=%s: HTTP %d %s", bad[i].v, r.status, (const char *)r.body);
        snprintf(want, sizeof want, "byte %d: %s", bad[i].byte, bad[i].what);
        if (!strstr((const char *)r.body, want))
            fail_msg("wait=%s: want \"%s\" in %s", bad[i].v, want, (const char *)r.body);
        hresp_free(&r);
    }
    /* given once, and without a NUL (a %00 would cut the value short): a value the
       server reads is the whole value the client sent */
    static const struct {
        const char *path, *want;
    } strict[] = {
        {"/v1/fl/state?wait=1.0.0.300%00garbage", "query parameter wait: byte 9"},
        {"/v1/fl/state?wait=1.0.0.300&wait=junk", "query parameter wait: given 2 times"},
        {"/v1/fl/state?wait=junk&wait=1.0.0.300", "query parameter wait: given 2 times"},
        {"/v1/fl/broadcast?round=1&round=2", "query parameter round: given 2 times"},
    };
    for (size_t i = 0; i < sizeof strict / sizeof strict[0]; i++) {
        hresp q;
        assert_int_equal(req("GET", strict[i].path, E.tok[0], NULL, 0, &q), 0);
        if (q.status != 400 || !strstr((const char *)q.body, strict[i].want))
            fail_msg("%s: HTTP %d %s (want 400 and \"%s\")", strict[i].path, q.status,
                     (const char *)q.body, strict[i].want);
        hresp_free(&q);
    }
    assert_int_equal(pvg_fl_coord_parked(coord), 0);
    /* the largest legal values are taken (the wait bounded by the server) */
    hresp r;
    assert_int_equal(
        req("GET", "/v1/fl/state?wait=1.18446744073709551615.7.4294967295", E.tok[0], NULL, 0, &r),
        0);
    assert_int_equal(r.status, 200); /* a stale round: answered at once */
    hresp_free(&r);
    assert_int_equal(pvg_fl_coord_parked(coord), 0);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    pvg_rng_free(rng);
}

/* Three clients join a round of n = 3 (t = 2); once all three are in round
 * 1's advertise phase (a wait from idle wakes on the start), clients 0 and 1
 * advertise: the quorum is in, and client 2 is expected and has sent
 * nothing. st[i] is client i's STATE, read from sr[i] (the caller frees). */
static void quorum_in(pvg_rng *rng, pvg_fl_state st[3], hresp sr[3])
{
    for (int i = 0; i < 3; i++)
        join(i);
    for (int i = 0; i < 3; i++) {
        poll_job j;
        poll_start(&j, i, 0, PVG_FL_PHASE_IDLE, 8000);
        poll_join(&j);
        state_of(&j.r, &st[i]);
        if (st[i].phase == PVG_FL_PHASE_IDLE) { /* its wait ended first: ask again */
            hresp_free(&j.r);
            i--;
            continue;
        }
        assert_int_equal(st[i].phase, PVG_FL_PHASE_ADVERTISE);
        sr[i] = j.r;
    }
    for (int i = 0; i < 2; i++) {
        pvg_fl_peer *p = NULL;
        uint8_t *m = NULL;
        size_t ml = 0;
        pvg_error err;
        assert_int_equal(pvg_fl_peer_new(&st[i], NULL, 4, rng, 0, &p, &err), PVG_OK);
        assert_int_equal(pvg_fl_peer_step(p, &st[i], &m, &ml, &err), PVG_OK);
        hresp r;
        assert_int_equal(req("POST", "/v1/fl/messages", E.tok[i], m, ml, &r), 0);
        assert_int_equal(r.status, 200);
        hresp_free(&r);
        pvg_free(m);
        pvg_fl_peer_free(p);
    }
}

/* ---- the liveness rule: a parked client is not silent ---- */
static void test_parked_client_is_not_silent(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_secure();
    /* a grace of 1 s: a wait runs out at half a grace, so the client's next poll has
       0.5 s to arrive before the grace would take it as silent, on a loaded machine */
    const double grace = 1.0;
    pvg_fl_coord *coord = coord_new(rng, 3, grace, 0);
    pvg_server *srv = t_fl_server_start(&E, coord);
    pvg_fl_state st[3];
    hresp sr[3];
    quorum_in(rng, st, sr);
    /* client 2 long-polls for 4 graces, each wait bounded by the grace: the phase stays
       open (the old rule took it as silent when its first wait ended) */
    double t0 = now_s();
    int waits = 0;
    while (now_s() - t0 < 4 * grace) {
        poll_job j;
        poll_start(&j, 2, 1, PVG_FL_PHASE_ADVERTISE, 8000);
        poll_join(&j);
        pvg_fl_state s2;
        state_of(&j.r, &s2);
        hresp_free(&j.r);
        if (s2.phase != PVG_FL_PHASE_ADVERTISE)
            fail_msg("the grace closed the phase under a parked client after %.2f s (%d waits)",
                     now_s() - t0, waits);
        assert_true(j.seconds < 4 * grace); /* bounded by the grace in a round */
        waits++;
    }
    assert_true(waits >= 3);
    /* client 2 stops: silent now, the grace closes the phase (client 0 waits for it) */
    poll_job j;
    poll_start(&j, 0, 1, PVG_FL_PHASE_ADVERTISE, 8000);
    for (;;) {
        poll_join(&j);
        pvg_fl_state s0;
        state_of(&j.r, &s0);
        hresp_free(&j.r);
        if (s0.phase != PVG_FL_PHASE_ADVERTISE) {
            assert_int_equal(s0.round, 1);
            assert_int_equal(s0.phase, PVG_FL_PHASE_SHARE);
            break;
        }
        if (now_s() - t0 > 20) fail_msg("the phase did not close after client 2 stopped");
        poll_start(&j, 0, 1, PVG_FL_PHASE_ADVERTISE, 8000);
    }
    for (int i = 0; i < 3; i++)
        hresp_free(&sr[i]);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    pvg_rng_free(rng);
}

/* ---- the C client long-polls ---- */
typedef struct cl_job {
    int index, plain;
    double timeout; /* seconds; 0: 60 */
    pthread_t th;
    pvg_status status;
    pvg_fl_client_stats stats;
    char error[PVG_ERROR_TEXT_LEN];
} cl_job;

static pvg_status ones(void *ctx, uint64_t round, const uint8_t *bc, size_t len, uint32_t *vec,
                       size_t d, pvg_error *err)
{
    (void)ctx;
    (void)round;
    (void)bc;
    (void)len;
    (void)err;
    for (size_t i = 0; i < d; i++)
        vec[i] = 1;
    return PVG_OK;
}

static void *cl_main(void *arg)
{
    cl_job *j = arg;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", E.port);
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_client_options o;
    memset(&o, 0, sizeof o);
    o.server = url;
    o.token = E.tok[j->index];
    o.rounds = 1;
    o.timeout_s = j->timeout > 0 ? j->timeout : 60;
    o.update = ones;
    o.rng = rng;
    o.plain_poll = j->plain;
    pvg_error err;
    j->status = pvg_fl_client_run(&o, &j->stats, &err);
    snprintf(j->error, sizeof j->error, "%s", err.text);
    pvg_rng_free(rng);
    return NULL;
}

static void test_client_long_polls(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = 4;
    co.sample_rate = 1.0;
    co.min_clients = 3;
    co.max_rounds = 1;
    co.start_delay = 1.0; /* a second between the joins and the round: the clients wait */
    for (int i = 0; i < 4; i++)
        co.phase_seconds[i] = 60;
    co.rng = rng;
    pvg_fl_coord *coord = NULL;
    pvg_error err;
    assert_int_equal(pvg_fl_coord_new(&co, &coord, &err), PVG_OK);
    pvg_server *srv = t_fl_server_start(&E, coord);
    /* clients 0 and 1 long-poll, client 2 polls at retry_ms (10 ms here): both kinds
       take part in the same round */
    cl_job j[3];
    for (int i = 0; i < 3; i++) {
        memset(&j[i], 0, sizeof j[i]);
        j[i].index = i;
        j[i].plain = i == 2;
        assert_int_equal(pthread_create(&j[i].th, NULL, cl_main, &j[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_join(j[i].th, NULL), 0);
    pvg_fl_round_stats rs;
    assert_int_equal(pvg_fl_coord_wait(coord, 1, 30, &rs, &err), PVG_OK);
    assert_int_equal(rs.phase, PVG_FL_PHASE_DONE);
    assert_int_equal(rs.survivors, 3);
    for (int i = 0; i < 3; i++) {
        if (j[i].status != PVG_OK) fail_msg("client %d: %s", i, j[i].error);
        assert_int_equal(j[i].stats.rounds, 1);
    }
    /* the long-polling clients waited at the server through the idle second and each
       phase: a handful of requests (join, a wait per change, the messages, the
       broadcast); polling every 10 ms through that second takes about a hundred */
    for (int i = 0; i < 2; i++)
        if (j[i].stats.requests > 30)
            fail_msg("client %d made %llu requests in one round", i, j[i].stats.requests);
    assert_true(j[2].stats.requests > j[0].stats.requests);
    assert_true(j[2].stats.requests > j[1].stats.requests);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    pvg_rng_free(rng);
}

/* ---- a full wait cap: the client backs off as the server asks ---- */
static void noop_wake(void *w)
{
    (void)w;
}

static void test_full_cap_backs_off(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord *coord = coord_new(rng, 5000, 0, 2); /* no round starts; 2 waits at most */
    pvg_server *srv = t_fl_server_start(&E, coord);
    pvg_error err;
    /* 2,000 registered clients (the STATE then says retry_ms 1000), two of them parked by
       hand: the cap is full, so every wait gets 503 with Retry-After: 1 */
    for (int i = 0; i < 2000; i++) {
        uint8_t k[PVG_FL_NET_KEY_BYTES];
        memset(k, 0, sizeof k);
        memcpy(k, &i, sizeof i);
        k[31] = 0xab;
        assert_int_equal(pvg_fl_coord_join(coord, k, &err), PVG_OK);
        if (i < 2) {
            int parked = 0;
            assert_int_equal(pvg_fl_coord_park(coord, k, 0, PVG_FL_PHASE_IDLE, 30000, noop_wake,
                                               NULL, &parked, &err),
                             PVG_OK);
            assert_int_equal(parked, 1);
        }
    }
    cl_job j[2];
    for (int i = 0; i < 2; i++) {
        memset(&j[i], 0, sizeof j[i]);
        j[i].index = i;
        j[i].plain = i == 1;
        j[i].timeout = 2.5;
        assert_int_equal(pthread_create(&j[i].th, NULL, cl_main, &j[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(j[i].th, NULL), 0);
    assert_int_equal(j[0].status, PVG_ERR_BUSY); /* both ran to their timeout */
    assert_int_equal(j[1].status, PVG_ERR_BUSY);
    /* a refused wait sends the client back to polling at retry_ms for the Retry-After:
       about a wait and a poll a second, against a poll a second for the plain client
       (a client that asked again at once made ~10 requests a second here) */
    if (j[0].stats.requests > 2 * j[1].stats.requests + 3)
        fail_msg("long-polling client: %llu requests against %llu of a plain one in 2.5 s",
                 (unsigned long long)j[0].stats.requests, (unsigned long long)j[1].stats.requests);
    pvg_fl_coord_wake_all(coord);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    pvg_rng_free(rng);
}

/* ---- a client that dies parked is taken as stopped one grace after it parked ---- */
static void close_and_forget(const char *path, const char *tok)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)E.port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char hdr[1024];
    int hl = snprintf(hdr, sizeof hdr,
                      "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", path, tok);
    assert_int_equal(send(fd, hdr, (size_t)hl, MSG_NOSIGNAL), hl);
    close(fd);
}

static void test_dead_parked_client_one_grace(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_secure();
    /* a grace of 2 s: the window below tells one grace from two with 1.4 s of room for
       a loaded machine's scheduling */
    const double grace = 2.0;
    pvg_fl_coord *coord = coord_new(rng, 3, grace, 0);
    pvg_server *srv = t_fl_server_start(&E, coord);
    pvg_fl_state st[3];
    hresp sr[3];
    quorum_in(rng, st, sr);
    /* client 2 parks a long wait and dies (its connection closed, never asking again) */
    char path[96];
    snprintf(path, sizeof path, "/v1/fl/state?wait=1.%llu.%d.30000",
             (unsigned long long)st[2].round, (int)st[2].phase);
    double t0 = now_s();
    close_and_forget(path, E.tok[2]);
    until_parked(coord, 1);
    /* the phase closes by the grace one grace after the park (the wait ran out at half a
       grace and left the client seen when it parked); it used to take two */
    double closed = -1;
    while (now_s() - t0 < 20) {
        hresp r;
        assert_int_equal(req("GET", "/v1/fl/state", E.tok[0], NULL, 0, &r), 0);
        pvg_fl_state s0;
        state_of(&r, &s0);
        hresp_free(&r);
        if (s0.phase != PVG_FL_PHASE_ADVERTISE) {
            closed = now_s() - t0;
            break;
        }
        struct timespec nap = {0, 5 * 1000000L};
        nanosleep(&nap, NULL);
    }
    if (!(closed >= grace * 0.9 && closed < grace * 1.7))
        fail_msg("the phase closed %.2f s after the dead client parked (grace %.1f s)", closed,
                 grace);
    for (int i = 0; i < 3; i++)
        hresp_free(&sr[i]);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    pvg_rng_free(rng);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parked_poll_wakes_on_phase_change),
        cmocka_unit_test(test_wait_ends_without_change),
        cmocka_unit_test(test_parked_polls_are_bounded),
        cmocka_unit_test(test_stop_answers_parked_polls),
        cmocka_unit_test(test_wait_field_malformed),
        cmocka_unit_test(test_parked_client_is_not_silent),
        cmocka_unit_test(test_client_long_polls),
        cmocka_unit_test(test_full_cap_backs_off),
        cmocka_unit_test(test_dead_parked_client_one_grace),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
