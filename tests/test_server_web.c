/*
 * test_server_web.c - browser tests of the pages: builds a small shop
 * (catalog with titles and prices, shoppers in taste groups, a trained
 * model, a privacy budget), starts the server on 127.0.0.1 with an
 * ephemeral port, and runs tests/web/pages.test.js (playwright-core driving
 * Debian's chromium headless). Skips (77) when /usr/bin/chromium or node is
 * absent; installs the pinned npm packages with `npm ci` when
 * tests/web/node_modules is missing. Screenshots go to ./web-screenshots
 * (the build directory when run by ctest).
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

static const char *ITEMS[][2] = {
    {"85123A", "WHITE HANGING HEART T-LIGHT HOLDER"},
    {"71053", "WHITE METAL LANTERN"},
    {"84406B", "CREAM CUPID HEARTS COAT HANGER"},
    {"84029G", "KNITTED UNION FLAG HOT WATER BOTTLE"},
    {"22752", "SET 7 BABUSHKA NESTING BOXES"},
    {"21730", "GLASS STAR FROSTED T-LIGHT HOLDER"},
    {"22633", "HAND WARMER UNION JACK"},
    {"22632", "HAND WARMER RED POLKA DOT"},
    {"84879", "ASSORTED COLOUR BIRD ORNAMENT"},
    {"22745", "POPPY'S PLAYHOUSE BEDROOM"},
    {"22748", "POPPY'S PLAYHOUSE KITCHEN"},
    {"22749", "FELTCRAFT PRINCESS CHARLOTTE DOLL"},
};
#define N_ITEMS (sizeof ITEMS / sizeof ITEMS[0])

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
        pvg_item it = {0, ITEMS[i][0], ITEMS[i][1], NULL, 0.85 + 1.1 * (double)i, NULL, 0, -1};
        assert_int_equal(pvg_store_item_put(s, &it, NULL, &err), PVG_OK);
    }
    for (int u = 0; u < 40; u++) {
        char user[16];
        snprintf(user, sizeof user, "%d", 17000 + u);
        int g = u % 3;
        for (int j = 0; j < 3; j++) {
            pvg_event e = {0};
            e.type = PVG_EVENT_PURCHASE;
            e.item = ITEMS[g * 4 + (u + j) % 4][0];
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
    /* a second admin key, which the dashboard test revokes from the page */
    char *spare = NULL;
    pvg_principal spare_p;
    assert_int_equal(pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "spare", 0, &spare, &spare_p, &err),
                     PVG_OK);
    pvg_store_free(s);
    /* the dashboard shows the last evaluation, as `privguide eval --json` writes it */
    char evp[200];
    snprintf(evp, sizeof evp, "%s/evaluation.json", dd);
    FILE *ef = fopen(evp, "w");
    assert_non_null(ef);
    fprintf(ef, "{\"model\":\"ials\",\"protocol\":\"random-split\",\"split\":\"test\","
                "\"users_evaluated\":40,\"recall@10\":0.4125,\"ndcg@10\":0.3011,"
                "\"precision@10\":0.05,\"map@10\":0.2,\"hr@10\":0.5,\"coverage@10\":0.9}\n");
    fclose(ef);

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
             "PVG_USER_ID=17001 PVG_SPARE_KEY=%s PVG_SPARE_KEY_ID=%s "
             "PVG_SCREENSHOT_DIR='%s/web-screenshots' ASAN_OPTIONS= "
             "LD_PRELOAD= timeout 240 node pages.test.js",
             webtests, pvg_server_port(srv), admin, tok, spare, spare_p.key_id, cwd);
    int rc = run(cmd);
    pvg_server_free(srv);
    pvg_auth_credential_free(admin);
    pvg_auth_credential_free(tok);
    pvg_auth_credential_free(spare);
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
