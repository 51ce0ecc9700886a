/* t_fl_server.c - the federated-training tests' server fixture (t_fl_server.h). */
#include "t_fl_server.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/auth.h>
#include <privguide/store.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int t_fl_env_setup(t_fl_env *e, const char *prefix, int n_clients)
{
    memset(e, 0, sizeof *e);
    if (n_clients < 1 || n_clients > T_FL_MAX_CLIENTS) {
        fprintf(stderr, "t_fl_env_setup: %d clients, want 1..%d\n", n_clients, T_FL_MAX_CLIENTS);
        return -1;
    }
    snprintf(e->dir, sizeof e->dir, "/tmp/%s_XXXXXX", prefix);
    if (!mkdtemp(e->dir)) {
        perror("t_fl_env_setup: mkdtemp");
        return -1;
    }
    snprintf(e->dd, sizeof e->dd, "%s/data", e->dir);
    pvg_error err;
    pvg_store *s = NULL;
    if (pvg_store_init(e->dd, NULL, &err) != PVG_OK || pvg_store_open(e->dd, &s, &err) != PVG_OK) {
        fprintf(stderr, "t_fl_env_setup: store: %s\n", err.text);
        return -1;
    }
    for (int i = 0; i < n_clients; i++) {
        char user[32];
        snprintf(user, sizeof user, "shopper-%d", i);
        pvg_principal p;
        if (pvg_auth_token_issue(s, user, 3600, 0, &e->tok[i], &p, &err) != PVG_OK) {
            fprintf(stderr, "t_fl_env_setup: token of %s: %s\n", user, err.text);
            pvg_store_free(s);
            return -1;
        }
        e->n_clients = i + 1;
    }
    pvg_store_free(s);
    return 0;
}

int t_fl_env_teardown(t_fl_env *e)
{
    for (int i = 0; i < e->n_clients; i++) {
        pvg_auth_credential_free(e->tok[i]);
        e->tok[i] = NULL;
    }
    e->n_clients = 0;
    if (!e->dir[0]) return 0;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    return system(cmd) == 0 ? 0 : -1;
}

pvg_server *t_fl_server_start(t_fl_env *e, pvg_fl_coord *c)
{
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = e->dd;
    o.threads = 4;
    o.auth_failure_rate = -1;
    o.synonyms_path = "";
    o.monitor_off = 1;
    o.fl = c;
    o.max_body_bytes = pvg_fl_coord_max_message(c) + 1024;
    pvg_server *srv = NULL;
    pvg_error err;
    if (pvg_server_start(&o, &srv, &err) != PVG_OK) fail_msg("server: %s", err.text);
    e->port = pvg_server_port(srv);
    return srv;
}
