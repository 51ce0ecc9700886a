/* t_web.c - the browser tests' harness (t_web.h). */
#include "t_web.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/auth.h>
#include <privguide/ledger.h>
#include <privguide/model.h>
#include <privguide/server.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int run(const char *cmd)
{
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static const char *source_dir(void)
{
    const char *src = getenv("PVG_SOURCE_DIR");
    assert_non_null(src);
    return src;
}

int t_web_unavailable(void)
{
    if (access("/usr/bin/chromium", X_OK) != 0) {
        printf("SKIP: /usr/bin/chromium is not installed (apt-get install chromium)\n");
        return 1;
    }
    if (run("command -v node >/dev/null && command -v npm >/dev/null") != 0) {
        printf("SKIP: node and npm are needed for the browser tests\n");
        return 1;
    }
    /* playwright-core (pinned in tests/web) needs Node.js 20 or later. */
    if (run("node -e 'process.exit(parseInt(process.versions.node) >= 20 ? 0 : 1)'") != 0) {
        printf(
            "SKIP: the browser tests need Node.js >= 20 (playwright-core); this node is older\n");
        return 1;
    }
    return 0;
}

static void npm_ci(void)
{
    char webtests[PATH_MAX], cmd[3 * PATH_MAX];
    snprintf(webtests, sizeof webtests, "%s/tests/web", source_dir());
    snprintf(cmd, sizeof cmd, "%s/node_modules/playwright-core/package.json", webtests);
    struct stat st;
    if (stat(cmd, &st) == 0) return;
    /* one installer at a time: the two browser tests, of the normal and the
     * sanitizer pass, may run together */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && flock /tmp/privguide-npm-ci.lock sh -c 'test -f "
             "node_modules/playwright-core/package.json "
             "|| timeout 300 npm ci --no-audit --no-fund >/dev/null 2>&1'",
             webtests);
    if (run(cmd) != 0) fail_msg("npm ci in %s failed", webtests);
}

static const t_web_item *item_of(const t_web_item *items, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(items[i].id, id) == 0) return &items[i];
    fail_msg("t_web: group item %s is not in the catalog", id);
    return NULL;
}

void t_web_shop_create(t_web_shop *w, const t_web_item *items, size_t n_items,
                       const char *const groups[3][4])
{
    memset(w, 0, sizeof *w);
    npm_ci();
    snprintf(w->dir, sizeof w->dir, "/tmp/pvg_test_web_XXXXXX");
    assert_non_null(mkdtemp(w->dir));
    snprintf(w->dd, sizeof w->dd, "%s/data", w->dir);
    pvg_error err;
    assert_int_equal(pvg_store_init(w->dd, NULL, &err), PVG_OK);
    assert_int_equal(pvg_store_open(w->dd, &w->s, &err), PVG_OK);
    for (size_t i = 0; i < n_items; i++) {
        pvg_item it = {0, items[i].id, items[i].title, items[i].category, items[i].price, NULL,
                       0, -1};
        assert_int_equal(pvg_store_item_put(w->s, &it, NULL, &err), PVG_OK);
    }
    for (int u = 0; u < 40; u++) {
        char user[16];
        snprintf(user, sizeof user, "%d", 17000 + u);
        for (int j = 0; j < 3; j++) {
            pvg_event e = {0};
            e.type = PVG_EVENT_PURCHASE;
            e.item = item_of(items, n_items, groups[u % 3][(u + j) % 4])->id;
            e.ts = 1291000000 + u * 3600 + j;
            e.fields = PVG_FIELD_QUANTITY | PVG_FIELD_AMOUNT;
            e.quantity = 2;
            e.amount = 5.0;
            int outcome;
            assert_int_equal(pvg_store_event_put(w->s, user, &e, NULL, &outcome, &err), PVG_OK);
        }
        pvg_consent c = {1, 1};
        assert_int_equal(pvg_store_consent_set(w->s, user, &c, &err), PVG_OK);
    }
    assert_int_equal(pvg_ledger_set_budget(w->s, "default", 4.0, 1e-6, &err), PVG_OK);
    pvg_dataset *ds = NULL;
    assert_int_equal(pvg_dataset_load_store(w->s, NULL, &ds, NULL, &err), PVG_OK);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_IALS, &p);
    p.factors = 8;
    p.epochs = 4;
    pvg_model *m = NULL;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    char mp[160];
    snprintf(mp, sizeof mp, "%s/model.pvgm", w->dd);
    assert_int_equal(pvg_model_save(m, mp, &err), PVG_OK);
    pvg_model_free(m);
    pvg_dataset_free(ds);
    assert_int_equal(
        pvg_auth_apikey_create(w->s, PVG_ROLE_ADMIN, "web test", 0, &w->admin, NULL, &err), PVG_OK);
    assert_int_equal(pvg_auth_token_issue(w->s, "17001", 3600, 0, &w->tok, NULL, &err), PVG_OK);
}

int t_web_run(t_web_shop *w, const char *script, const char *extra_env)
{
    pvg_store_free(w->s);
    w->s = NULL;
    const char *src = source_dir();
    char web[PATH_MAX], api[PATH_MAX];
    snprintf(web, sizeof web, "%s/src/server/web", src);
    snprintf(api, sizeof api, "%s/docs/openapi.json", src);
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = w->dd;
    o.web_dir = web;
    o.openapi_path = api;
    o.threads = 2;
    o.popular_k = 8;
    pvg_server *srv = NULL;
    pvg_error err;
    pvg_status stt = pvg_server_start(&o, &srv, &err);
    if (stt != PVG_OK) fprintf(stderr, "start: %s\n", err.text);
    assert_int_equal(stt, PVG_OK);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "/tmp");
    size_t cap = 4 * PATH_MAX + (extra_env ? strlen(extra_env) : 0);
    char *cmd = malloc(cap);
    assert_non_null(cmd);
    snprintf(cmd, cap,
             "cd '%s/tests/web' && PVG_BASE_URL=http://127.0.0.1:%d PVG_ADMIN_KEY=%s "
             "PVG_USER_TOKEN=%s PVG_USER_ID=17001 %s PVG_SCREENSHOT_DIR='%s/web-screenshots' "
             "ASAN_OPTIONS= LD_PRELOAD= timeout 240 node %s",
             src, pvg_server_port(srv), w->admin, w->tok, extra_env ? extra_env : "", cwd, script);
    int rc = run(cmd);
    free(cmd);
    pvg_server_free(srv);
    return rc;
}

void t_web_shop_free(t_web_shop *w)
{
    pvg_store_free(w->s);
    w->s = NULL;
    pvg_auth_credential_free(w->admin);
    pvg_auth_credential_free(w->tok);
    w->admin = w->tok = NULL;
    if (w->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
        (void)run(cmd);
    }
}
