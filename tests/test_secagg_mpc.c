/*
 * test_secagg_mpc.c - `mpc sum` through the library: the strict CSV reader
 * (positions of errors), joint totals among parties running in threads on
 * 127.0.0.1 with additive and Shamir sharing, and failures that must end
 * with an error within the deadline: a missing party, a peer speaking
 * garbage, a peer with other settings.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/secagg.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[256];

static const char *write_file(const char *name, const char *text)
{
    static char path[8][512];
    static int slot;
    char *p = path[slot++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pvg-mpc-test-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_csv_reader(void **state)
{
    (void)state;
    pvg_mpc_table *t = NULL;
    pvg_error err;
    const char *p =
        write_file("a.csv", "group,value\nshoes,1.5\n\"x,\"\"y\"\"\",-2\nshoes,0.25\n\nbooks,3\n");
    assert_int_equal(pvg_mpc_table_read_csv(p, 2, NULL, &t, &err), PVG_OK);
    assert_int_equal(pvg_mpc_table_count(t), 3);
    assert_string_equal(pvg_mpc_table_label(t, 0), "books");
    assert_int_equal(pvg_mpc_table_value(t, 0), 300);
    assert_string_equal(pvg_mpc_table_label(t, 1), "shoes");
    assert_int_equal(pvg_mpc_table_value(t, 1), 175);
    assert_string_equal(pvg_mpc_table_label(t, 2), "x,\"y\"");
    assert_int_equal(pvg_mpc_table_value(t, 2), -200);
    pvg_mpc_table_free(t);
    struct {
        const char *text;
        long line, col;
    } bad[] = {
        {"a,1\nb,2\nc,1x\n", 3, 3},
        {"a,1\nnofield\n", 2, 8},
        {"a,1,2\n", 1, 4},
        {"a,1.234\n", 1, 3},
        {",5\n", 1, 1},
        {"\"open,5\n", 1, 0},
        {"a,99999999999999999999\n", 1, 3},
        {"a,\n", 1, 3},
        {"a\"b,1\n", 1, 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.csv", i);
        p = write_file(name, bad[i].text);
        t = NULL;
        assert_int_equal(pvg_mpc_table_read_csv(p, 2, NULL, &t, &err), PVG_ERR_INVALID);
        assert_null(t);
        assert_string_equal(err.source, p);
        assert_int_equal(err.line, bad[i].line);
        if (bad[i].col) assert_int_equal(err.column, bad[i].col);
    }
    assert_int_equal(pvg_mpc_table_read_csv("/nonexistent/x.csv", 0, NULL, &t, &err), PVG_ERR_IO);
    /* overflow of a group's total */
    p = write_file("of.csv", "a,9223372036854775807\na,1\n");
    assert_int_equal(pvg_mpc_table_read_csv(p, 0, NULL, &t, &err), PVG_ERR_INVALID);
    assert_int_equal(err.line, 2);
    /* an agreed group list restricts the rows */
    pvg_mpc_table *g = NULL;
    p = write_file("groups.txt", "books\nshoes\n\ntoys\n");
    assert_int_equal(pvg_mpc_table_read_groups(p, &g, &err), PVG_OK);
    assert_int_equal(pvg_mpc_table_count(g), 3);
    assert_true(pvg_mpc_table_has(g, "toys"));
    assert_false(pvg_mpc_table_has(g, "cars"));
    p = write_file("rows.csv", "shoes,1\ncars,2\n");
    assert_int_equal(pvg_mpc_table_read_csv(p, 0, g, &t, &err), PVG_ERR_INVALID);
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.text, "cars"));
    pvg_mpc_table_free(g);
    p = write_file("dup.txt", "a\nb\na\n");
    assert_int_equal(pvg_mpc_table_read_groups(p, &g, &err), PVG_ERR_INVALID);
    assert_int_equal(err.line, 3);
}

typedef struct {
    pvg_mpc_options o;
    pvg_mpc_table *mine, *out;
    pvg_status st;
    pvg_error err;
} party;

static void *party_main(void *arg)
{
    party *p = arg;
    p->o.rng = pvg_rng_new_secure();
    p->st = pvg_mpc_sum(&p->o, p->mine, &p->out, &p->err);
    pvg_rng_free(p->o.rng);
    return NULL;
}

static unsigned pick_port(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return 20000 + (unsigned)((ts.tv_nsec / 1000 + getpid() * 7919) % 40000);
}

/* runs P parties in threads; retries on a busy port */
static void run_parties(party *ps, unsigned P)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        unsigned port = pick_port();
        pthread_t th[16];
        for (unsigned i = 0; i < P; i++) {
            ps[i].o.port = port;
            ps[i].o.me = i;
            ps[i].o.parties = P;
            ps[i].out = NULL;
            assert_int_equal(pthread_create(&th[i], NULL, party_main, &ps[i]), 0);
        }
        for (unsigned i = 0; i < P; i++)
            pthread_join(th[i], NULL);
        int busy = 0;
        for (unsigned i = 0; i < P; i++)
            if (ps[i].st != PVG_OK && strstr(ps[i].err.text, "listening on")) busy = 1;
        if (!busy) return;
        for (unsigned i = 0; i < P; i++)
            pvg_mpc_table_free(ps[i].out);
    }
}

static void test_joint_totals(void **state)
{
    (void)state;
    pvg_mpc_table *agreed = pvg_mpc_table_new(0);
    const char *gl[4] = {"g0", "g1", "g2", "zzz-nobody"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pvg_mpc_table_add(agreed, gl[i], 0, NULL), PVG_OK);
    for (int variant = 0; variant < 3; variant++) {
        int scheme = variant == 0 ? 1 : 2;
        enum { P = 4 };
        party ps[P];
        memset(ps, 0, sizeof ps);
        int64_t want[3] = {0, 0, 0}; /* groups g0, g1, g2 */
        for (unsigned i = 0; i < P; i++) {
            ps[i].mine = pvg_mpc_table_new(0);
            ps[i].o.scheme = (pvg_mpc_scheme)scheme;
            ps[i].o.threshold = scheme == 2 ? 3 : 0;
            ps[i].o.timeout_ms = 20000;
            ps[i].o.groups = variant == 2 ? agreed : NULL;
            for (int g = 0; g < 3; g++) {
                if ((i + (unsigned)g) % 3 == 0) continue; /* not every party has every group */
                char l[16];
                snprintf(l, sizeof l, "g%d", g);
                int64_t v = (int64_t)(i * 1000 + (unsigned)g) * (g == 1 ? -1 : 1);
                assert_int_equal(pvg_mpc_table_add(ps[i].mine, l, v, NULL), PVG_OK);
                want[g] += v;
            }
        }
        run_parties(ps, P);
        for (unsigned i = 0; i < P; i++) {
            if (ps[i].st != PVG_OK) fail_msg("party %u: %s", i, ps[i].err.text);
            assert_int_equal(pvg_mpc_table_count(ps[i].out), variant == 2 ? 4 : 3);
            for (int g = 0; g < 3; g++)
                assert_int_equal(pvg_mpc_table_value(ps[i].out, (size_t)g), want[g]);
            if (variant == 2) assert_int_equal(pvg_mpc_table_value(ps[i].out, 3), 0);
            pvg_mpc_table_free(ps[i].out);
            pvg_mpc_table_free(ps[i].mine);
        }
    }
    pvg_mpc_table_free(agreed);
}

static void test_missing_party_times_out(void **state)
{
    (void)state;
    party ps[2];
    memset(ps, 0, sizeof ps);
    for (int i = 0; i < 2; i++) {
        ps[i].mine = pvg_mpc_table_new(0);
        ps[i].o.scheme = PVG_MPC_ADDITIVE;
        ps[i].o.timeout_ms = 700;
    }
    /* parties 0 and 1 of 3; party 2 never comes (retried on a busy port) */
    struct timespec a, b;
    for (int attempt = 0; attempt < 3; attempt++) {
        unsigned port = pick_port();
        pthread_t th[2];
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (unsigned i = 0; i < 2; i++) {
            ps[i].o.port = port;
            ps[i].o.me = i;
            ps[i].o.parties = 3;
            assert_int_equal(pthread_create(&th[i], NULL, party_main, &ps[i]), 0);
        }
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (!strstr(ps[0].err.text, "listening on") && !strstr(ps[1].err.text, "listening on"))
            break;
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ps[i].st, PVG_ERR_IO);
        assert_non_null(strstr(ps[i].err.text, "timed out"));
        pvg_mpc_table_free(ps[i].mine);
    }
    assert_true(b.tv_sec - a.tv_sec < 5);
}

static void test_refuses_test_rng(void **state)
{
    (void)state;
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(3);
    pvg_mpc_table *mine = pvg_mpc_table_new(0), *out = NULL;
    pvg_mpc_options o = {.parties = 3,
                         .me = 0,
                         .port = 40000,
                         .scheme = PVG_MPC_ADDITIVE,
                         .timeout_ms = 100,
                         .rng = det};
    pvg_error err;
    assert_int_equal(pvg_mpc_sum(&o, mine, &out, &err), PVG_ERR_POLICY);
    assert_null(out);
    pvg_mpc_table_free(mine);
    pvg_rng_free(det);
}

typedef struct {
    unsigned port;
    const uint8_t *bytes;
    size_t len;
} rogue_arg;

static void *rogue_main(void *arg)
{
    rogue_arg *r = arg;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)r->port)};
    for (int i = 0; i < 100; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            ssize_t w = send(fd, r->bytes, r->len, MSG_NOSIGNAL);
            (void)w;
            struct timespec ts = {0, 300 * 1000000L};
            nanosleep(&ts, NULL);
            close(fd);
            return NULL;
        }
        close(fd);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Party 0 of 3 faces a peer that sends garbage, a HELLO from a party that
 * does not exist, or a HELLO with other settings: it fails with a clear
 * error, never crashes or hangs. */
static void test_rogue_peer(void **state)
{
    (void)state;
    uint8_t garbage[40];
    memset(garbage, 'Z', sizeof garbage);
    uint8_t bad_id[20] = {'P', 'V', 'M', 'P', 1, 1, 0, 0, 9, 0, 0, 0, 36, 0, 0, 0, 3, 1, 3, 0};
    uint8_t other[52] = {'P', 'V', 'M', 'P', 1, 1, 0, 0, 1, 0, 0, 0, 36, 0, 0, 0, 4, 1, 4, 0};
    uint8_t short_hello[20] = {'P', 'V', 'M', 'P', 1, 1, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 3, 1, 3, 0};
    uint8_t huge[20] = {'P', 'V', 'M',  'P',  1,    1,    0, 0, 1, 0,
                        0,   0,   0xFF, 0xFF, 0xFF, 0x7F, 3, 1, 3, 0};
    struct {
        const uint8_t *b;
        size_t n;
        const char *want;
    } cases[] = {
        {garbage, sizeof garbage, "magic"},
        {bad_id, sizeof bad_id, "party 9"},
        {other, sizeof other, "other settings"},
        {short_hello, sizeof short_hello, "HELLO of 4 bytes"},
        {huge, sizeof huge, "exceeds the limit"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        party p;
        memset(&p, 0, sizeof p);
        p.mine = pvg_mpc_table_new(0);
        p.o.scheme = PVG_MPC_ADDITIVE;
        p.o.parties = 3;
        p.o.me = 0;
        p.o.timeout_ms = 3000;
        p.o.port = pick_port();
        rogue_arg ra = {p.o.port, cases[c].b, cases[c].n};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, rogue_main, &ra), 0);
        party_main(&p);
        pthread_join(th, NULL);
        assert_int_not_equal(p.st, PVG_OK);
        if (!strstr(p.err.text, cases[c].want) && !strstr(p.err.text, "listening on"))
            fail_msg("case %zu: got '%s', expected it to mention '%s'", c, p.err.text,
                     cases[c].want);
        pvg_mpc_table_free(p.mine);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_reader),
        cmocka_unit_test(test_joint_totals),
        cmocka_unit_test(test_missing_party_times_out),
        cmocka_unit_test(test_rogue_peer),
        cmocka_unit_test(test_refuses_test_rng),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
