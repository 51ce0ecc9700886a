/*
 * test_server_web_assist.c - browser tests of the shop's assistant panel,
 * "why this?", search suggestions and facets, and the portal's searches
 * and conversations: builds a small shop with categories (teas, mugs,
 * candles, holders), shoppers in taste groups, an iALS model and a privacy
 * budget, starts the server on an ephemeral port and runs
 * tests/web/assist.test.js (the harness of t_web.h: playwright-core driving
 * Debian's chromium headless). Skips (77) without /usr/bin/chromium or
 * node >= 20.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "t_web.h"

static const t_web_item ITEMS[] = {
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
static const char *const GROUPS[3][4] = {
    {"T01", "T02", "T03", "T05"}, {"M01", "M02", "M03", "T06"}, {"C01", "C02", "H02", "H03"}};

static void test_pages_in_browser(void **state)
{
    (void)state;
    t_web_shop w;
    t_web_shop_create(&w, ITEMS, N_ITEMS, GROUPS);
    int rc = t_web_run(&w, "assist.test.js", NULL);
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
