/*
 * fuzz_http_body.c - libFuzzer harness for the JSON request bodies of the
 * HTTP API: POST /v1/events and PUT /v1/users/{id}/consent (the two routes
 * that take a body; src/server/routes.c, with the body reader
 * pvg_srv_req_json of src/server/http.c).
 *
 * The harness starts a real server once (a fresh store in a temporary
 * directory, an ephemeral port it never connects to) and then calls each
 * route's handler from the routes table directly with a request whose
 * body is the input, as the dispatcher does after authentication - as an
 * admin, or as the shopper u1 with a user token. Every answer must be a
 * JSON document with a 2xx/4xx status (503 allowed: busy store).
 *
 * Input: selector u8 (bit 0: events / consent; bit 1: admin / user u1)
 * | the body. Seeds: fuzz/corpus/http_body/ (the examples of
 * docs/openapi.json and docs/server.md).
 */
#include "fuzz_common.h"

#include <privguide/auth.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include "server/server_internal.h"

static pvg_server *g_srv;
static pvg_principal g_user;
static char g_dir[256];

static void cleanup(void)
{
    pvg_error err;
    if (g_srv) {
        pvg_error_clear(&err);
        if (pvg_server_stop(g_srv, 0, &err) != PVG_OK)
            fprintf(stderr, "server stop: %s\n", err.text);
        pvg_server_free(g_srv);
    }
    if (g_dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    }
}

static void setup(void)
{
    pvg_error err;
    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/pvg-fuzz-http-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) abort();
    atexit(cleanup);
    char dd[300];
    snprintf(dd, sizeof dd, "%s/data", g_dir);
    pvg_store *s = NULL;
    if (pvg_store_init(dd, NULL, &err) != PVG_OK || pvg_store_open(dd, &s, &err) != PVG_OK) {
        fprintf(stderr, "store: %s\n", err.text);
        abort();
    }
    pvg_consent c = {1, 1};
    char *tok = NULL;
    if (pvg_store_consent_set(s, "u1", &c, &err) != PVG_OK ||
        pvg_auth_token_issue(s, "u1", 3600 * 24 * 365, 0, &tok, &g_user, &err) != PVG_OK) {
        fprintf(stderr, "setup: %s\n", err.text);
        abort();
    }
    pvg_auth_credential_free(tok);
    pvg_store_free(s);
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = dd;
    o.port = 0;
    o.threads = 1;
    o.reload_ms = 60000;
    o.auth_failure_rate = -1;
    o.allow_insecure_rng = 1;
    o.insecure_seed = 1;
    if (pvg_server_start(&o, &g_srv, &err) != PVG_OK) {
        fprintf(stderr, "server: %s\n", err.text);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_srv) setup();
    if (size < 1) return 0;
    unsigned sel = data[0];
    pvg_srv_req r;
    memset(&r, 0, sizeof r);
    r.srv = g_srv;
    r.method = (sel & 1) ? "PUT" : "POST";
    r.url = (sel & 1) ? "/v1/users/u1/consent" : "/v1/events";
    r.route = pvg_srv_route_match(r.method, r.url, r.params);
    if (r.route < 0) abort();
    if (sel & 2) {
        r.who = g_user;
        snprintf(r.actor, sizeof r.actor, "token:%s", g_user.key_id);
    } else {
        r.who.role = PVG_ROLE_ADMIN;
        snprintf(r.actor, sizeof r.actor, "key:fuzz");
    }
    r.body = fuzz_text(data + 1, size - 1);
    r.body_len = r.body_cap = size - 1;
    r.t0 = pvg_srv_now();
    pvg_srv_routes()[r.route].handler(&r);
    if (r.store) pvg_srv_store_put(g_srv, r.store);
    int ok_status = (r.status >= 200 && r.status < 300) || (r.status >= 400 && r.status < 500) ||
                    r.status == 503;
    json_error_t je;
    json_t *j = r.out ? json_loadb(r.out, r.out_len, 0, &je) : NULL;
    if (!ok_status || !j) {
        fprintf(stderr, "status %d, answer %.300s\n", r.status, r.out ? r.out : "(none)");
        abort();
    }
    json_decref(j);
    free(r.out);
    free(r.body);
    return 0;
}
