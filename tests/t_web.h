/*
 * t_web.h - the browser tests' harness (test_server_web.c and
 * test_server_web_assist.c): a small shop in a temporary data dir (a
 * catalog, 40 shoppers in three taste groups with three purchases each and
 * consent, a privacy budget, a trained iALS model, an admin key and shopper
 * 17001's token), the server started in-process on an ephemeral port, and a
 * script of tests/web run against it by node (playwright-core driving
 * Debian's chromium headless). The pinned npm packages are installed with
 * `npm ci` when tests/web/node_modules lacks them. Screenshots go to
 * ./web-screenshots (the build directory when run by ctest).
 */
#ifndef PVG_T_WEB_H
#define PVG_T_WEB_H

#include <privguide/store.h>

#include <stddef.h>

typedef struct t_web_item {
    const char *id, *title, *category; /* category may be NULL */
    double price;
} t_web_item;

typedef struct t_web_shop {
    char dir[64], dd[96]; /* the temporary dir and its data dir */
    pvg_store *s;         /* open until t_web_run: a test may add to the shop */
    char *admin;          /* an admin API key */
    char *tok;            /* shopper 17001's token */
} t_web_shop;

/* Returns 1 (after printing why, for a skip: exit status 77) when the
 * browser tests cannot run here: no /usr/bin/chromium, no node and npm, or a
 * node older than 20 (playwright-core's minimum); 0 when they can. */
int t_web_unavailable(void);

/* Builds the shop (failing the running test on any error): the n_items
 * items, then shoppers 17000..17039, shopper u buying items
 * groups[u % 3][(u + j) % 4] for j = 0..2 (ids of items), all consenting; a
 * budget of epsilon 4, delta 1e-6; an iALS model (8 factors, 4 epochs) saved
 * as model.pvgm; w->admin and w->tok. Installs the npm packages first. */
void t_web_shop_create(t_web_shop *w, const t_web_item *items, size_t n_items,
                       const char *const groups[3][4]);

/* Closes w->s, starts the server on the shop (the pages of src/server/web,
 * docs/openapi.json), runs `node script` in tests/web with PVG_BASE_URL,
 * PVG_ADMIN_KEY, PVG_USER_TOKEN, PVG_USER_ID=17001, PVG_SCREENSHOT_DIR and
 * extra_env ("NAME=value ..." with shell-safe values, or NULL) in its
 * environment, stops the server. Returns the script's exit status. */
int t_web_run(t_web_shop *w, const char *script, const char *extra_env);

/* Frees the credentials and removes the temporary dir. */
void t_web_shop_free(t_web_shop *w);

#endif
