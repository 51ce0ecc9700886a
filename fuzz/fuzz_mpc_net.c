/*
 * fuzz_mpc_net.c - libFuzzer harness for the `mpc sum` protocol messages
 * (src/crypto/mpc_net.c: HELLO, LABELS, SHARES, PARTIAL and the header and
 * stream handling around them). The message parsers are internal to the
 * protocol, so the harness plays the two other parties over real sockets:
 * party 0 (pvg_mpc_sum, in a thread) listens on 127.0.0.1; the harness
 * connects twice and sends, on each connection, the bytes the input gives
 * for it, then half-closes, so party 0 never waits for more (no timeouts).
 *
 * Input: flags u8 (bit 0: Shamir, else additive; bit 1: the agreed group
 * list {a, b, c}, else labels are exchanged) | len u16 LE | the stream of
 * the first connection (len bytes) | the stream of the second (the rest).
 * Party 0 holds {a: 5.00, b: -3.00} (2 decimals).
 * Seeds: fuzz/corpus/mpc_net/ (honest runs of both schemes, written by
 * fuzz/make_seeds.py).
 */
#include "fuzz_common.h"

#include <privguide/rng.h>
#include <privguide/secagg.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

static pvg_mpc_table *g_mine, *g_groups;
static pvg_rng *g_rng;
static unsigned g_port;

typedef struct {
    pvg_mpc_options o;
    pvg_status st;
    pvg_error err;
    pvg_mpc_table *out;
} run_ctx;

static void *party0(void *arg)
{
    run_ctx *r = arg;
    r->st = pvg_mpc_sum(&r->o, g_mine, &r->out, &r->err);
    return NULL;
}

/* A port that is free now (the kernel's choice), below 65535 - 3. */
static unsigned free_port(void)
{
    for (int tries = 0; tries < 100; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof a;
        if (fd < 0) abort();
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &al) == 0) {
            unsigned p = ntohs(a.sin_port);
            close(fd);
            if (p >= 1024 && p < 65500) return p;
        } else {
            close(fd);
        }
    }
    abort();
}

static void setup(void)
{
    pvg_error err;
    if (pvg_init() != PVG_OK) abort();
    g_rng = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    g_mine = pvg_mpc_table_new(2);
    g_groups = pvg_mpc_table_new(2);
    if (!g_rng || !g_mine || !g_groups || pvg_mpc_table_add(g_mine, "a", 500, &err) != PVG_OK ||
        pvg_mpc_table_add(g_mine, "b", -300, &err) != PVG_OK ||
        pvg_mpc_table_add(g_groups, "a", 0, &err) != PVG_OK ||
        pvg_mpc_table_add(g_groups, "b", 0, &err) != PVG_OK ||
        pvg_mpc_table_add(g_groups, "c", 0, &err) != PVG_OK)
        abort();
    g_port = free_port();
}

static int dial(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    /* party 0 may not listen yet: retry briefly */
    for (int i = 0; i < 2000; i++) {
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
        close(fd);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return -1;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    close(fd);
    return -1;
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return; /* party 0 gave up on this connection */
        p += w;
        n -= (size_t)w;
    }
}

static void close_reset(int fd)
{
    /* RST instead of FIN: no TIME_WAIT left behind by millions of runs */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_rng) setup();
    if (size < 3) return 0;
    unsigned flags = data[0];
    size_t l1 = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if (l1 > size) l1 = size;
    run_ctx r;
    memset(&r, 0, sizeof r);
    r.o.parties = 3;
    r.o.me = 0;
    r.o.port = g_port;
    r.o.scheme = (flags & 1) ? PVG_MPC_SHAMIR : PVG_MPC_ADDITIVE;
    r.o.timeout_ms = 5000;
    r.o.rng = g_rng;
    r.o.allow_insecure_rng = 1;
    r.o.groups = (flags & 2) ? g_groups : NULL;
    pvg_error_clear(&r.err);
    pthread_t th;
    if (pthread_create(&th, NULL, party0, &r) != 0) abort();
    int a = dial(g_port), b = a >= 0 ? dial(g_port) : -1;
    if (a >= 0) {
        send_all(a, data, l1);
        shutdown(a, SHUT_WR);
    }
    if (b >= 0) {
        send_all(b, data + l1, size - l1);
        shutdown(b, SHUT_WR);
    }
    pthread_join(th, NULL);
    if (a >= 0) close_reset(a);
    if (b >= 0) close_reset(b);
    fuzz_check_error(r.st, &r.err);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "mpc sum: %d %s\n", (int)r.st, r.err.text);
    if (r.st == PVG_OK) {
        size_t n = pvg_mpc_table_count(r.out);
        for (size_t i = 1; i < n; i++)
            if (strcmp(pvg_mpc_table_label(r.out, i - 1), pvg_mpc_table_label(r.out, i)) >= 0)
                abort();
        pvg_mpc_table_free(r.out);
    } else if (r.st == PVG_ERR_IO && strstr(r.err.text, "listening on")) {
        g_port = free_port(); /* someone took the port: move */
    }
    return 0;
}
