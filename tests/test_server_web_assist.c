/*
 * test_server_web_assist.c - browser tests of the shop's assistant panel,
 * "why this?", search suggestions and facets, and the portal's searches
 * and conversations: builds a small shop with categories (teas, mugs,
 * candles, holders), shoppers in taste groups, an iALS model and a privacy
 * budget, starts the server on an ephemeral port and runs
 * tests/web/assist.test.js (playwright-core driving Debian's chromium
 * headless). Skips (77) without /usr/bin/chromium or node >= 20; installs
 * the pinned npm packages with `npm ci` when tests/web/node_modules is
 * missing. Screenshots go to ./web-screenshots (the build directory when
 * run by ctest).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/auth.h>
#include <privguide/ledger.h>
#include <privguide/model.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const struct {
    const char *id, *title, *category;
    double price;
} ITEMS[] = {
    {"T01", "GREEN TEA TIN", "tea", 3.50},
    {"T02", "CHAMOMILE TEA BAGS", "tea", 4.00},
    {"T03", "ENGLISH BREAKFAST TEA CADDY", "tea", 6.50},
    {"T04", "EARL GREY TEA GIFT BOX", "tea", 12.95},
    {"T05", "JASMINE TEA SAMPLER", "tea", 8.95},
    {"T06", "CERAMIC TEAPOT", "teapot", 8.50},
    {"M01", "RED SPOT MUG", "mug", 2.95},
    {"M02", "BLUE STRIPE MUG", "mug", 3.25},
    {"M03", "GREEN POLKA DOT MUG", "mug", 3.45},
    {"C01", "WHITE PILLAR CANDLE", "candle", 1.50},
    {"C02", "SCENTED CANDLE SET", "candle", 6.00},
    {"C03", "VANILLA JAR CANDLE", "candle", 4.25},
    {"H01", "GLASS T-LIGHT HOLDER", "holder", 1.95},
    {"H02", "RED HANGING HEART T-LIGHT HOLDER", "holder", 2.95},
    {"H03", "WHITE HANGING HEART T-LIGHT HOLDER", "holder", 2.55},
};
#define N_ITEMS (sizeof ITEMS / sizeof ITEMS[0])
/* the taste groups: teas, mugs and candles, holders */
static const char *GROUPS[3][4] = {
    {"T01", "T02", "T03", "T05"}, {"M01", "M02", "M03", "T06"}, {"C01", "C02", "H02", "H03"}};

static int run(const char *cmd)
{
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static void test_pages_in_browser(void **state)
{
    (void)state;
    const char *src = getenv("PVG_SOURCE_DIR");
    assert_non_null(src);
    char webtests[PATH_MAX], cmd[3 * PATH_MAX];
    snprintf(webtests, sizeof webtests, "%s/tests/web", src);
    snprintf(cmd, sizeof cmd, "%s/node_modules/playwright-core/package.json", webtests);
    struct stat st;
    if (stat(cmd, &st) != 0) {
        /* one installer at a time: the normal and the sanitizer pass may run together */
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && flock /tmp/privguide-npm-ci.lock sh -c 'test -f "
                 "node_modules/playwright-core/package.json "
                 "|| timeout 300 npm ci --no-audit --no-fund >/dev/null 2>&1'",
                 webtests);
        if (run(cmd) != 0) fail_msg("npm ci in %s failed", webtests);
    }

    char dir[] = "/tmp/pvg_test_web_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char dd[128], mp[160];
    snprintf(dd, sizeof dd, "%s/data", dir);
    snprintf(mp, sizeof mp, "%s/model.pvgm", dd);
    pvg_error err;
    assert_int_equal(pvg_store_init(dd, NULL, &err), PVG_OK);
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(dd, &s, &err), PVG_OK);
    for (size_t i = 0; i < N_ITEMS; i++) {
        pvg_item it = {0, ITEMS[i].id, ITEMS[i].title, ITEMS[i].category, ITEMS[i].price, NULL,
                       0, -1};
        assert_int_equal(pvg_store_item_put(s, &it, NULL, &err), PVG_OK);
    }
    for (int u = 0; u < 40; u++) {
        char user[16];
        snprintf(user, sizeof user, "%d", 17000 + u);
        int g = u % 3;
        for (int j = 0; j < 3; j++) {
            pvg_event e = {0};
            e.type = PVG_EVENT_PURCHASE;
            e.item = GROUPS[g][(u + j) % 4];
            e.ts = 1291000000 + u * 3600 + j;
            e.fields = PVG_FIELD_QUANTITY | PVG_FIELD_AMOUNT;
            e.quantity = 2;
            e.amount = 5.0;
            int outcome;
            assert_int_equal(pvg_store_event_put(s, user, &e, NULL, &outcome, &err), PVG_OK);
        }
        pvg_consent c = {1, 1};
        assert_int_equal(pvg_store_consent_set(s, user, &c, &err), PVG_OK);
    }
    assert_int_equal(pvg_ledger_set_budget(s, "default", 4.0, 1e-6, &err), PVG_OK);
    pvg_dataset *ds = NULL;
    assert_int_equal(pvg_dataset_load_store(s, NULL, &ds, NULL, &err), PVG_OK);
    pvg_train_params p;
    pvg_train_params_default(PVG_MODEL_IALS, &p);
    p.factors = 8;
    p.epochs = 4;
    pvg_model *m = NULL;
    assert_int_equal(pvg_model_train(ds, &p, &m, NULL, &err), PVG_OK);
    assert_int_equal(pvg_model_save(m, mp, &err), PVG_OK);
    pvg_model_free(m);
    pvg_dataset_free(ds);
    char *admin = NULL, *tok = NULL;
    assert_int_equal(pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "web test", 0, &admin, NULL, &err),
                     PVG_OK);
    assert_int_equal(pvg_auth_token_issue(s, "17001", 3600, 0, &tok, NULL, &err), PVG_OK);
    pvg_store_free(s);

    char web[PATH_MAX], api[PATH_MAX];
    snprintf(web, sizeof web, "%s/src/server/web", src);
    snprintf(api, sizeof api, "%s/docs/openapi.json", src);
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = dd;
    o.web_dir = web;
    o.openapi_path = api;
    o.threads = 2;
    o.popular_k = 8;
    pvg_server *srv = NULL;
    pvg_status stt = pvg_server_start(&o, &srv, &err);
    if (stt != PVG_OK) fprintf(stderr, "start: %s\n", err.text);
    assert_int_equal(stt, PVG_OK);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) strcpy(cwd, "/tmp");
    snprintf(cmd, sizeof cmd,
             "cd '%s' && PVG_BASE_URL=http://127.0.0.1:%d PVG_ADMIN_KEY=%s PVG_USER_TOKEN=%s "
             "PVG_USER_ID=17001 PVG_SCREENSHOT_DIR='%s/web-screenshots' ASAN_OPTIONS= "
             "LD_PRELOAD= timeout 240 node assist.test.js",
             webtests, pvg_server_port(srv), admin, tok, cwd);
    int rc = run(cmd);
    pvg_server_free(srv);
    pvg_auth_credential_free(admin);
    pvg_auth_credential_free(tok);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    (void)run(cmd);
    assert_int_equal(rc, 0);
}

int main(void)
{
    if (access("/usr/bin/chromium", X_OK) != 0) {
        printf("SKIP: /usr/bin/chromium is not installed (apt-get install chromium)\n");
        return 77;
    }
    if (run("command -v node >/dev/null && command -v npm >/dev/null") != 0) {
        printf("SKIP: node and npm are needed for the browser tests\n");
        return 77;
    }
    /* playwright-core (pinned in tests/web) needs Node.js 20 or later. */
    if (run("node -e 'process.exit(parseInt(process.versions.node) >= 20 ? 0 : 1)'") != 0) {
        printf(
            "SKIP: the browser tests need Node.js >= 20 (playwright-core); this node is older\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages_in_browser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
