/*
 * t_fl_server.h - the fixture of the federated-training tests over HTTP: a
 * store in a fresh temporary data dir with one shopper token per client
 * ("shopper-0", "shopper-1", ...), and the server started in-process on an
 * ephemeral port of 127.0.0.1 with a round coordinator behind /v1/fl/.
 */
#ifndef PVG_T_FL_SERVER_H
#define PVG_T_FL_SERVER_H

#include <privguide/fl_net.h>
#include <privguide/server.h>

#define T_FL_MAX_CLIENTS 16

typedef struct t_fl_env {
    char dir[64], dd[96];        /* the temporary dir and its data dir */
    char *tok[T_FL_MAX_CLIENTS]; /* the shoppers' tokens (freed by t_fl_env_teardown) */
    int n_clients;
    int port; /* of the server t_fl_server_start started last */
} t_fl_env;

/* Creates /tmp/<prefix>_XXXXXX/data with n_clients (<= T_FL_MAX_CLIENTS)
 * shopper tokens. Returns 0, or -1 with the reason on stderr (a cmocka group
 * set-up's failure). */
int t_fl_env_setup(t_fl_env *e, const char *prefix, int n_clients);

/* Frees the tokens and removes the temporary dir. Returns 0 or -1. */
int t_fl_env_teardown(t_fl_env *e);

/* Starts the server on e's data dir with coordinator c (borrowed; it must
 * outlive the server), an ephemeral port (stored in e->port), no monitor, no
 * auth-failure limit and a body limit fitting c's largest message. Fails the
 * running test when it cannot. Free with pvg_server_free before c. */
pvg_server *t_fl_server_start(t_fl_env *e, pvg_fl_coord *c);

#endif
