/*
 * test_server_auth_refusals.c - the three ways a request can fail
 * authentication (no Authorization header, a scheme other than Bearer, a
 * credential that is not valid) are treated alike: each is answered 401
 * with its own message, counted in privguide_auth_failures_total, and
 * charged to the client address's failure limit, so that once the address
 * is over it every kind is answered 429 and a valid credential still works.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "t_http.h"

#include <privguide/auth.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256], dd[300];
static char *admin;
static int port;

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/pvg_test_auth_refusals_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(dd, sizeof dd, "%s/data", dir);
    pvg_error err;
    pvg_store *s = NULL;
    if (pvg_store_init(dd, NULL, &err) != PVG_OK || pvg_store_open(dd, &s, &err) != PVG_OK) {
        fprintf(stderr, "store: %s\n", err.text);
        return -1;
    }
    pvg_principal p;
    pvg_status st = pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "ops", 0, &admin, &p, &err);
    pvg_store_free(s);
    t_http_connect_to(&port);
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

/* A server on the test's data dir allowing failure_rate failed
 * authentications per second per address (< 0: no limit). */
static pvg_server *start(double failure_rate)
{
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = dd;
    o.threads = 2;
    o.monitor_off = 1;
    o.allow_insecure_rng = 1;
    o.auth_failure_rate = failure_rate;
    pvg_server *srv = NULL;
    pvg_error err;
    if (pvg_server_start(&o, &srv, &err) != PVG_OK) fprintf(stderr, "start: %s\n", err.text);
    assert_non_null(srv);
    port = pvg_server_port(srv);
    assert_true(port > 0);
    return srv;
}

enum refusal { NO_HEADER, OTHER_SCHEME, BAD_CREDENTIAL, N_REFUSALS };

/* GET /v1/whoami failing authentication the given way; returns the status
 * and checks the answer's "message" names the reason. */
static int refused(enum refusal how)
{
    static const char *const auth[] = {"", "Authorization: Basic b3BzOnB3\r\n",
                                       "Authorization: Bearer pvgk_guess\r\n"};
    static const char *const says[] = {"a credential is required", "want the Bearer scheme", ""};
    char raw[300];
    int n = snprintf(raw, sizeof raw,
                     "GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n",
                     auth[how]);
    t_http_resp r;
    assert_int_equal(t_http_raw(raw, (size_t)n, &r), 0);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    const char *msg = json_string_value(json_object_get(j, "message"));
    assert_non_null(msg);
    if (r.status == 401) assert_non_null(strstr(msg, says[how]));
    json_decref(j);
    t_http_resp_free(&r);
    return r.status;
}

static long long auth_failures_total(void)
{
    t_http_resp r;
    assert_int_equal(t_http("GET", "/metrics", admin, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    const char *at = strstr(r.body, "\nprivguide_auth_failures_total ");
    assert_non_null(at);
    long long v = atoll(at + strlen("\nprivguide_auth_failures_total "));
    t_http_resp_free(&r);
    return v;
}

/* Without a limit: 401 with each kind's message, each counted once. */
static void test_each_refusal_is_401_and_counted(void **state)
{
    (void)state;
    pvg_server *srv = start(-1);
    for (int round = 0; round < 2; round++)
        for (int how = 0; how < N_REFUSALS; how++)
            assert_int_equal(refused((enum refusal)how), 401);
    assert_int_equal(auth_failures_total(), 2 * N_REFUSALS);
    expect_free("GET", "/v1/whoami", admin, NULL, 200);
    assert_int_equal(auth_failures_total(), 2 * N_REFUSALS); /* success is not counted */
    pvg_server_free(srv);
}

/* With a limit of one failure (the bucket refills in 1000 s): whichever
 * kind comes first uses it up, and after it every kind gets 429 - and is
 * still counted - while the valid key is served. */
static void test_each_refusal_charges_the_limit(void **state)
{
    (void)state;
    for (int first = 0; first < N_REFUSALS; first++) {
        pvg_server *srv = start(0.001);
        assert_int_equal(refused((enum refusal)first), 401);
        for (int how = 0; how < N_REFUSALS; how++)
            assert_int_equal(refused((enum refusal)how), 429);
        expect_free("GET", "/v1/whoami", admin, NULL, 200);
        assert_int_equal(auth_failures_total(), 1 + N_REFUSALS);
        pvg_server_free(srv);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_refusal_is_401_and_counted),
        cmocka_unit_test(test_each_refusal_charges_the_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
