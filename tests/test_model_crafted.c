/*
 * test_model_crafted.c - model files crafted by an attacker (found by the
 * model fuzz harness, kept as regression seeds in fuzz/corpus/model/) are
 * refused with PVG_ERR_CORRUPT instead of reaching undefined behaviour or
 * loading into a model whose lookups cannot find its own items:
 *   hyperparameters of -8.6e279 and -9.1e208 (an out-of-range double ->
 *       integer conversion), patched into a valid model here;
 *   regress_item_order_unsorted      an ITEM_ORDER section that does not
 *       sort the item ids (the binary search missed listed items).
 * The checksum is an integrity check anyone can recompute, so the test
 * fixes it up as an attacker would.
 */
#include <privguide/model.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HDR_FILE_SIZE 72
#define HDR_CHECKSUM 240

/* Loads fuzz/corpus/model/NAME with file size and checksum fixed up,
 * after writing patch[0..patch_len) at byte patch_off (patch_len 0: none). */
static pvg_status load_patched(const char *name, size_t patch_off, const void *patch,
                               size_t patch_len, pvg_error *err)
{
    const char *src = getenv("PVG_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/fuzz/corpus/model/%s", src ? src : ".", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char *buf = malloc(1 << 20);
    size_t n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    assert_true(n > HDR_CHECKSUM + 32);
    if (patch_len) {
        assert_true(patch_off + patch_len <= n);
        memcpy(buf + patch_off, patch, patch_len);
    }
    uint64_t fs = n;
    memcpy(buf + HDR_FILE_SIZE, &fs, 8);
    memset(buf + HDR_CHECKSUM, 0, 32);
    unsigned char sum[32];
    crypto_generichash(sum, 32, buf, n, NULL, 0);
    memcpy(buf + HDR_CHECKSUM, sum, 32);
    char tmp[] = "/tmp/pvg_crafted.XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, n), (ssize_t)n);
    close(fd);
    free(buf);
    pvg_model *m = NULL;
    pvg_status st = pvg_model_load(tmp, &m, err);
    if (st == PVG_OK) {
        /* accepted: every listed item must at least be found again */
        for (int64_t i = 0; i < (int64_t)pvg_model_n_items(m); i++)
            assert_int_equal(pvg_model_item_index(m, pvg_model_item_id(m, i)), i);
        pvg_model_free(m);
    }
    unlink(tmp);
    return st;
}

static pvg_status load_crafted(const char *name, pvg_error *err)
{
    return load_patched(name, 0, NULL, 0, err);
}

#define HDR_HYPER 128 /* 14 doubles: factors, epochs, ..., seed (11), init_std, threads */

static void test_hyper_out_of_range(void **state)
{
    (void)state;
    pvg_error err;
    /* the values the fuzzer found (-9.1e208 as the seed, -8.6e279), NaN, and
     * factors beyond any int */
    const struct {
        int index;
        double v;
    } cases[] = {{11, -9.13252e208}, {10, -8.6e279}, {0, 1e300}, {1, NAN}, {13, -1}, {6, INFINITY}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pvg_error_clear(&err);
        assert_int_equal(
            load_patched("ials.pvgm", HDR_HYPER + 8 * (size_t)cases[i].index, &cases[i].v, 8, &err),
            PVG_ERR_CORRUPT);
        if (!strstr(err.text, "range") && !strstr(err.text, "finite"))
            print_error("%s\n", err.text);
        assert_true(strstr(err.text, "range") || strstr(err.text, "finite"));
    }
}

static void test_item_order_unsorted(void **state)
{
    (void)state;
    pvg_error err;
    assert_int_equal(load_crafted("regress_item_order_unsorted", &err), PVG_ERR_CORRUPT);
}

static void test_seeds_still_load(void **state)
{
    (void)state;
    const char *names[] = {"ials.pvgm", "ease.pvgm", "itemknn.pvgm", "bpr.pvgm", "popularity.pvgm"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        pvg_error err;
        pvg_status st = load_crafted(names[i], &err);
        if (st != PVG_OK) print_error("%s: %s\n", names[i], err.text);
        assert_int_equal(st, PVG_OK);
    }
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_hyper_out_of_range),
                                       cmocka_unit_test(test_item_order_unsorted),
                                       cmocka_unit_test(test_seeds_still_load)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
