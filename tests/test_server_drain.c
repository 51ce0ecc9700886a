/*
 * test_server_drain.c - the drain of pvg_server_stop: every connection the
 * kernel accepted before the stop gets a whole answer (never an empty reply
 * or a reset), whether one of the server's threads or the stop's own sweep of
 * the listen backlog took it over; connections after the stop are refused at
 * connect. Each round opens many connections, sends a whole request on each
 * and stops at once, so some are still in the backlog, some handed over and
 * not yet picked up by a worker, some being answered. Every socket has a
 * timeout; no sleep.
 */
#define _GNU_SOURCE /* strcasestr */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/auth.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <dirent.h>
#include <sys/time.h>
#include <unistd.h>
#include <pthread.h>

static char dir[256];
static char datadir[300];
static char *admin;

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/pvg_test_server_drain_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(datadir, sizeof datadir, "%s/data", dir);
    pvg_error err;
    if (pvg_store_init(datadir, NULL, &err) != PVG_OK) {
        fprintf(stderr, "init: %s\n", err.text);
        return -1;
    }
    pvg_store *s = NULL;
    if (pvg_store_open(datadir, &s, &err) != PVG_OK) return -1;
    pvg_principal p;
    pvg_status st = pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "drain", 0, &admin, &p, &err);
    pvg_store_free(s);
    return st == PVG_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    pvg_auth_credential_free(admin);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static pvg_server *start(int threads)
{
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = datadir;
    o.port = 0;
    o.threads = threads;
    o.monitor_off = 1;
    o.allow_insecure_rng = 1;
    o.insecure_seed = 1;
    o.auth_failure_rate = -1;
    pvg_server *srv = NULL;
    pvg_error err;
    if (pvg_server_start(&o, &srv, &err) != PVG_OK) fprintf(stderr, "start: %s\n", err.text);
    assert_non_null(srv);
    return srv;
}

/* A blocking socket with 10 s timeouts, connected to 127.0.0.1:port; -1
 * with errno when the connect fails. */
static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Reads fd to its end; returns the bytes read (at most cap - 1, NUL
 * terminated) or -1 with errno on a reset or a timeout. */
static ssize_t read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (k == 0) break;
        n += (size_t)k;
        if (n == cap - 1) break;
    }
    buf[n] = 0;
    return (ssize_t)n;
}

#define CONNS 96
#define ROUNDS 12

/* One round: CONNS connections each with a whole request (half of them an
 * authenticated one, whose answer waits for the audit commit; each asks for
 * "Connection: close", so that an answered connection does not stay open
 * idle and hold the drain until the idle timeout), then the stop at once; every connection must
 * hold a whole answer (its Content-Length of body), /healthz a 200. */
static void one_round(int threads, int round)
{
    pvg_server *srv = start(threads);
    int port = pvg_server_port(srv);
    int fds[CONNS];
    char req[1024];
    for (int i = 0; i < CONNS; i++) {
        fds[i] = dial(port);
        if (fds[i] < 0)
            fail_msg("round %d: connect %d before the stop: %s", round, i, strerror(errno));
        int n = (i % 2) ? snprintf(req, sizeof req,
                                   "GET /v1/users/drain%d/data HTTP/1.1\r\nHost: t\r\n"
                                   "Authorization: Bearer %s\r\nConnection: close\r\n\r\n",
                                   i, admin)
                        : snprintf(req, sizeof req,
                                   "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_int_equal(send(fds[i], req, (size_t)n, MSG_NOSIGNAL), n);
    }
    pvg_error err;
    assert_int_equal(pvg_server_stop(srv, 30000, &err), PVG_OK);
    /* after the stop: refused at connect, not accepted and dropped */
    int late = dial(port);
    int late_errno = errno;
    if (late >= 0) close(late);
    assert_true(late < 0);
    assert_int_equal(late_errno, ECONNREFUSED);
    int bad = 0;
    char buf[8192];
    for (int i = 0; i < CONNS; i++) {
        ssize_t n = read_all(fds[i], buf, sizeof buf);
        const char *hdr_end = n > 0 ? strstr(buf, "\r\n\r\n") : NULL;
        const char *cl = n > 0 ? strcasestr(buf, "\r\nContent-Length: ") : NULL;
        long want = cl && hdr_end && cl < hdr_end ? strtol(cl + 18, NULL, 10) : -1;
        const char *why = n < 0                               ? strerror(errno)
                          : n == 0                            ? "empty reply"
                          : strncmp(buf, "HTTP/1.1 ", 9) != 0 ? "no status line"
                          : !hdr_end || want < 0              ? "no header block or length"
                          : (i % 2 == 0 && strncmp(buf, "HTTP/1.1 200 ", 13) != 0)
                              ? "healthz not 200"
                          : (long)(n - (hdr_end + 4 - buf)) != want ? "a cut-off body"
                                                                    : NULL;
        if (why) {
            fprintf(stderr, "round %d, threads %d, connection %d: %s (%zd bytes: %.60s)\n", round,
                    threads, i, why, n, n > 0 ? buf : "");
            bad++;
        }
        close(fds[i]);
    }
    pvg_server_free(srv);
    if (bad)
        fail_msg("round %d: %d of %d connections accepted before the stop lost their answer", round,
                 bad, CONNS);
}

/* Seconds since an arbitrary start (monotonic). */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads one answer from a kept-alive connection: the header block and its
 * Content-Length of body; the bytes read (NUL terminated) or -1. */
static ssize_t read_answer(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
        if (k <= 0) return -1;
        n += (size_t)k;
        buf[n] = 0;
        const char *hdr_end = strstr(buf, "\r\n\r\n");
        const char *cl = strcasestr(buf, "\r\nContent-Length: ");
        if (hdr_end && cl && cl < hdr_end &&
            (long)(n - (size_t)(hdr_end + 4 - buf)) >= strtol(cl + 18, NULL, 10))
            return (ssize_t)n;
        if (n == cap - 1) return -1;
    }
}

/* An idle keep-alive connection (its request answered, the connection left
 * open) does not hold the drain until the idle timeout (15 s): the stop
 * closes it within milliseconds, with an end of file, not a reset. A connection whose
 * request is in flight at the stop still gets its whole answer. */
static void test_idle_keepalive_closed_at_stop(void **state)
{
    (void)state;
    static const int threads[] = {1, 4, 256};
    for (int t = 0; t < 3; t++) {
        pvg_server *srv = start(threads[t]);
        int port = pvg_server_port(srv);
        char buf[8192], req[1024];
        int idle = dial(port);
        assert_true(idle >= 0);
        const char *hz = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
        assert_int_equal(send(idle, hz, strlen(hz), MSG_NOSIGNAL), (ssize_t)strlen(hz));
        assert_true(read_answer(idle, buf, sizeof buf) > 0);
        assert_null(strcasestr(buf, "Connection: close"));
        /* a request in flight at the stop: its answer waits for the audit commit */
        int busy = dial(port);
        assert_true(busy >= 0);
        int n = snprintf(req, sizeof req,
                         "GET /v1/users/keepalive/data HTTP/1.1\r\nHost: t\r\n"
                         "Authorization: Bearer %s\r\n\r\n",
                         admin);
        assert_int_equal(send(busy, req, (size_t)n, MSG_NOSIGNAL), n);
        double t0 = now_s();
        pvg_error err;
        assert_int_equal(pvg_server_stop(srv, 30000, &err), PVG_OK);
        double took = now_s() - t0;
        ssize_t got = read_answer(busy, buf, sizeof buf);
        if (got <= 0) fail_msg("threads %d: the request in flight lost its answer", threads[t]);
        assert_true(strncmp(buf, "HTTP/1.1 ", 9) == 0);
        /* the idle one: end of file, no reset */
        ssize_t k = recv(idle, buf, sizeof buf, 0);
        if (k != 0)
            fail_msg("threads %d: idle connection: %zd (%s), want end of file", threads[t], k,
                     k < 0 ? strerror(errno) : "bytes");
        close(idle);
        close(busy);
        pvg_server_free(srv);
        if (took >= 5.0)
            fail_msg("threads %d: the stop took %.1f s with one idle keep-alive connection "
                     "(idle timeout 15 s)",
                     threads[t], took);
    }
}

/* pvg_server_stop(arg, 30000) in a thread; a failure is printed (the
 * pipelined request then finds no answer). */
static void *stop_thread(void *arg)
{
    pvg_error err;
    if (pvg_server_stop(arg, 30000, &err) != PVG_OK) fprintf(stderr, "stop: %s\n", err.text);
    return NULL;
}

/* A pipelined request whose first part the server has already read when the
 * stop begins is answered, not cut: the client sends a request and the
 * start of the next one (its request line, part of its headers) in one
 * write, reads the first answer (by then the server holds the second part
 * in its buffer), the stop begins, and the client sends the rest of the
 * second request once the stop has closed the truly idle connection (its
 * end of file shows the stop's sweep of idle connections is done). The
 * pipelined request must get its whole answer. */
static void test_pipelined_partial_request_answered(void **state)
{
    (void)state;
    static const int threads[] = {1, 4};
    for (int t = 0; t < 2; t++) {
        pvg_server *srv = start(threads[t]);
        int port = pvg_server_port(srv);
        char buf[8192];
        const char *hz = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
        int idle = dial(port);
        assert_true(idle >= 0);
        assert_int_equal(send(idle, hz, strlen(hz), MSG_NOSIGNAL), (ssize_t)strlen(hz));
        assert_true(read_answer(idle, buf, sizeof buf) > 0);
        int pipe_fd = dial(port);
        assert_true(pipe_fd >= 0);
        const char *first = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                            "GET /healthz HTTP/1.1\r\nHo";
        const char *rest = "st: t\r\n\r\n";
        assert_int_equal(send(pipe_fd, first, strlen(first), MSG_NOSIGNAL), (ssize_t)strlen(first));
        assert_true(read_answer(pipe_fd, buf, sizeof buf) > 0);
        pthread_t stopper;
        assert_int_equal(pthread_create(&stopper, NULL, stop_thread, srv), 0);
        /* the idle connection's end of file: the stop's sweep is done */
        ssize_t k = recv(idle, buf, sizeof buf, 0);
        if (k != 0)
            fail_msg("threads %d: idle connection: %zd (%s), want end of file", threads[t], k,
                     k < 0 ? strerror(errno) : "bytes");
        ssize_t sent = send(pipe_fd, rest, strlen(rest), MSG_NOSIGNAL);
        ssize_t got = sent == (ssize_t)strlen(rest) ? read_answer(pipe_fd, buf, sizeof buf) : -1;
        int e = errno;
        assert_int_equal(pthread_join(stopper, NULL), 0);
        close(idle);
        close(pipe_fd);
        pvg_server_free(srv);
        if (got <= 0)
            fail_msg("threads %d: the pipelined request, begun before the stop, lost its answer "
                     "(%s)",
                     threads[t], got < 0 && sent < 0 ? strerror(e) : "end of file or reset");
        assert_true(strncmp(buf, "HTTP/1.1 200 ", 13) == 0);
    }
}

/* Open descriptors of this process. */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own */
}

/* The stop leaves no descriptor behind (the worker barrier's loopback
 * sockets, the connections handed over), with one thread, a pool, and the
 * largest pool (256: one barrier connection per worker). */
static void test_stop_leaks_no_descriptor(void **state)
{
    (void)state;
    static const int threads[] = {1, 4, 256};
    for (int t = 0; t < 3; t++) {
        int before = open_fds();
        pvg_server *srv = start(threads[t]);
        int port = pvg_server_port(srv);
        int fds[8];
        const char *hz = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        for (int i = 0; i < 8; i++) {
            fds[i] = dial(port);
            assert_true(fds[i] >= 0);
            assert_int_equal(send(fds[i], hz, strlen(hz), MSG_NOSIGNAL), (ssize_t)strlen(hz));
        }
        double t0 = now_s();
        pvg_error err;
        assert_int_equal(pvg_server_stop(srv, 30000, &err), PVG_OK);
        double took = now_s() - t0;
        char buf[4096];
        for (int i = 0; i < 8; i++) {
            assert_true(read_all(fds[i], buf, sizeof buf) > 0);
            close(fds[i]);
        }
        pvg_server_free(srv);
        int after = open_fds();
        if (after != before)
            fail_msg("threads %d: %d descriptors open before the server, %d after it", threads[t],
                     before, after);
        if (took >= 10.0) fail_msg("threads %d: the stop took %.1f s", threads[t], took);
    }
}

static void test_accepted_before_stop_answered(void **state)
{
    (void)state;
    static const int threads[] = {1, 2, 4}; /* one thread, and pools */
    for (int r = 0; r < ROUNDS; r++)
        one_round(threads[r % 3], r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted_before_stop_answered),
        cmocka_unit_test(test_idle_keepalive_closed_at_stop),
        cmocka_unit_test(test_pipelined_partial_request_answered),
        cmocka_unit_test(test_stop_leaks_no_descriptor),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
