/*
 * test_server_web.c - browser tests of the pages: builds a small shop
 * (catalog with titles and prices, shoppers in taste groups, a trained
 * model, a privacy budget, a second admin key, the last evaluation), starts
 * the server on 127.0.0.1 with an ephemeral port, and runs
 * tests/web/pages.test.js (the harness of t_web.h: playwright-core driving
 * Debian's chromium headless). Skips (77) when /usr/bin/chromium or node is
 * absent.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/auth.h>

#include "t_web.h"

#include <stdio.h>

static const t_web_item ITEMS[] = {
    {"85123A", "WHITE HANGING HEART T-LIGHT HOLDER", NULL, 0.85},
    {"71053", "WHITE METAL LANTERN", NULL, 1.95},
    {"84406B", "CREAM CUPID HEARTS COAT HANGER", NULL, 3.05},
    {"84029G", "KNITTED UNION FLAG HOT WATER BOTTLE", NULL, 4.15},
    {"22752", "SET 7 BABUSHKA NESTING BOXES", NULL, 5.25},
    {"21730", "GLASS STAR FROSTED T-LIGHT HOLDER", NULL, 6.35},
    {"22633", "HAND WARMER UNION JACK", NULL, 7.45},
    {"22632", "HAND WARMER RED POLKA DOT", NULL, 8.55},
    {"84879", "ASSORTED COLOUR BIRD ORNAMENT", NULL, 9.65},
    {"22745", "POPPY'S PLAYHOUSE BEDROOM", NULL, 10.75},
    {"22748", "POPPY'S PLAYHOUSE KITCHEN", NULL, 11.85},
    {"22749", "FELTCRAFT PRINCESS CHARLOTTE DOLL", NULL, 12.95},
};
#define N_ITEMS (sizeof ITEMS / sizeof ITEMS[0])
/* the taste groups: four items each, in catalog order */
static const char *const GROUPS[3][4] = {{"85123A", "71053", "84406B", "84029G"},
                                         {"22752", "21730", "22633", "22632"},
                                         {"84879", "22745", "22748", "22749"}};

static void test_pages_in_browser(void **state)
{
    (void)state;
    t_web_shop w;
    t_web_shop_create(&w, ITEMS, N_ITEMS, GROUPS);
    /* a second admin key, which the dashboard test revokes from the page */
    char *spare = NULL;
    pvg_principal spare_p;
    pvg_error err;
    assert_int_equal(
        pvg_auth_apikey_create(w.s, PVG_ROLE_ADMIN, "spare", 0, &spare, &spare_p, &err), PVG_OK);
    /* the dashboard shows the last evaluation, as `privguide eval --json` writes it */
    char evp[200];
    snprintf(evp, sizeof evp, "%s/evaluation.json", w.dd);
    FILE *ef = fopen(evp, "w");
    assert_non_null(ef);
    fprintf(ef, "{\"model\":\"ials\",\"protocol\":\"random-split\",\"split\":\"test\","
                "\"users_evaluated\":40,\"recall@10\":0.4125,\"ndcg@10\":0.3011,"
                "\"precision@10\":0.05,\"map@10\":0.2,\"hr@10\":0.5,\"coverage@10\":0.9}\n");
    fclose(ef);
    char env[256];
    snprintf(env, sizeof env, "PVG_SPARE_KEY=%s PVG_SPARE_KEY_ID=%s", spare, spare_p.key_id);
    int rc = t_web_run(&w, "pages.test.js", env);
    pvg_auth_credential_free(spare);
    t_web_shop_free(&w);
    assert_int_equal(rc, 0);
}

int main(void)
{
    if (t_web_unavailable()) return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages_in_browser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
