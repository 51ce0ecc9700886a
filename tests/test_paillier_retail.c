/*
 * test_paillier_retail.c - encrypted spend totals on the Online Retail
 * dataset: the decrypted total per country equals the plaintext total to
 * the cent (no noise), and a DP release is bounded, noisy and charged to the
 * budget ledger. Skips (77) when the dataset is absent. Under sanitizers the
 * first 30,000 lines are used instead of the whole file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <privguide/ledger.h>
#include <privguide/paillier.h>
#include <privguide/store.h>

#define MAXG 256

static char g_dir[256];
static char g_data[512];
static pvg_store *g_store;
static pvg_paillier_pub *g_pub;
static pvg_paillier_priv *g_priv;

/* The plaintext reference, computed the obvious way from the same events. */
typedef struct ref {
    char names[MAXG][64];
    long long cents[MAXG], clamped[MAXG], users[MAXG];
    int n;
    int64_t clamp;
} ref;

static int ref_group(ref *r, const char *name)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->names[i], name) == 0) return i;
    assert_true(r->n < MAXG);
    snprintf(r->names[r->n], sizeof r->names[0], "%s", name);
    return r->n++;
}

static int ref_user(void *ctx, const pvg_user_view *u, const pvg_event *ev, size_t n)
{
    ref *r = ctx;
    long long sub[MAXG] = {0};
    int order[MAXG], no = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(ev[i].fields & PVG_FIELD_AMOUNT)) continue;
        if (ev[i].type != PVG_EVENT_PURCHASE && ev[i].type != PVG_EVENT_RETURN) continue;
        const char *c = (ev[i].fields & PVG_FIELD_COUNTRY) && ev[i].country && *ev[i].country
                            ? ev[i].country
                            : "(unknown)";
        int g = ref_group(r, c);
        int seen = 0;
        for (int k = 0; k < no; k++)
            seen |= order[k] == g;
        if (!seen) order[no++] = g;
        sub[g] += llround(ev[i].amount * 100.0);
    }
    for (int k = 0; k < no; k++) {
        r->cents[order[k]] += sub[order[k]];
        r->users[order[k]]++;
    }
    if (no) { /* DP reference: first group only, clamped */
        long long v = sub[order[0]];
        if (v > r->clamp) v = r->clamp;
        if (v < -r->clamp) v = -r->clamp;
        r->clamped[order[0]] += v;
    }
    return 0;
}

static int write_subset(const char *src, const char *dst, int lines)
{
    gzFile in = gzopen(src, "rb");
    FILE *out = fopen(dst, "wb");
    if (!in || !out) return -1;
    char buf[8192];
    for (int i = 0; i <= lines && gzgets(in, buf, sizeof buf); i++)
        fputs(buf, out);
    gzclose(in);
    return fclose(out);
}

static int setup(void **state)
{
    const char *shared = getenv("PVG_SHARED_DIR");
    char src[512];
    snprintf(src, sizeof src, "%s/data/online-retail/online-retail.csv.gz",
             shared ? shared : "../shared");
    if (access(src, R_OK) != 0) {
        fprintf(stderr, "SKIP: Online Retail not found at %s\n", src);
        exit(77);
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/pvg-he-retail-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    char store_dir[300];
    snprintf(store_dir, sizeof store_dir, "%s/store", g_dir);
    snprintf(g_data, sizeof g_data, "%s", src);
    if (getenv("PVG_SANITIZED")) {
        snprintf(g_data, sizeof g_data, "%s/subset.csv", g_dir);
        if (write_subset(src, g_data, 30000) != 0) return -1;
    }
    pvg_error err;
    if (pvg_store_init(store_dir, NULL, &err) != PVG_OK) {
        fprintf(stderr, "init: %s\n", err.text);
        return -1;
    }
    if (pvg_store_open(store_dir, &g_store, &err) != PVG_OK) {
        fprintf(stderr, "open: %s\n", err.text);
        return -1;
    }
    pvg_ingest_stats stats;
    if (pvg_store_ingest_file(g_store, g_data, PVG_FORMAT_ONLINE_RETAIL, NULL, &stats, &err) !=
        PVG_OK) {
        fprintf(stderr, "ingest: %s\n", err.text);
        return -1;
    }
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(5);
    pvg_status st = pvg_paillier_keygen(2048, rng, 1, &g_pub, &g_priv, &err);
    pvg_rng_free(rng);
    return st == PVG_OK ? 0 : -1;
}

static int teardown(void **state)
{
    pvg_store_free(g_store);
    pvg_paillier_priv_free(g_priv);
    pvg_paillier_pub_free(g_pub);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static long long decrypt_cents(const pvg_paillier_ct *ct)
{
    char *s = NULL;
    pvg_error err;
    pvg_status st = pvg_paillier_decrypt_text(g_priv, ct, &s, &err);
    if (st != PVG_OK) fail_msg("decrypt: %s", err.text);
    long long v = strtoll(s, NULL, 10);
    free(s);
    return v;
}

static void test_country_totals_exact(void **state)
{
    ref *r = calloc(1, sizeof *r);
    r->clamp = 100000;
    pvg_error err;
    assert_int_equal(
        pvg_store_foreach_user(g_store, PVG_FOREACH_REQUIRE_ANALYTICS, ref_user, r, &err), PVG_OK);
    assert_true(r->n >= 3);
    pvg_spend_options o = {.group_by = PVG_SPEND_BY_COUNTRY, .threads = 3};
    pvg_spend_result *res = NULL;
    pvg_status st = pvg_paillier_spend_total(g_store, g_pub, &o, &res, &err);
    if (st != PVG_OK) fail_msg("spend_total: %s", err.text);
    assert_int_equal((int)res->n, r->n);
    long long all = 0;
    for (size_t i = 0; i < res->n; i++) {
        int g = ref_group(r, res->groups[i].name);
        long long got = decrypt_cents(res->groups[i].total);
        if (got != r->cents[g])
            fail_msg("%s: encrypted total %lld cents, plaintext %lld", r->names[g], got,
                     r->cents[g]);
        assert_int_equal(res->groups[i].users, r->users[g]);
        assert_int_equal(pvg_paillier_ct_exponent(res->groups[i].total), 0);
        all += got;
        if (i > 0) assert_true(strcmp(res->groups[i - 1].name, res->groups[i].name) < 0);
    }
    assert_true(all > 0);
    /* one group: the grand total */
    pvg_spend_result *one = NULL;
    pvg_spend_options o1 = {.group_by = PVG_SPEND_BY_NONE};
    assert_int_equal(pvg_paillier_spend_total(g_store, g_pub, &o1, &one, &err), PVG_OK);
    assert_int_equal(one->n, 1);
    assert_string_equal(one->groups[0].name, "all");
    assert_int_equal(decrypt_cents(one->groups[0].total), all);
    pvg_spend_result_free(one);
    pvg_spend_result_free(res);
    free(r);
}

static void test_dp_totals_charged(void **state)
{
    ref *r = calloc(1, sizeof *r);
    r->clamp = 100000; /* 1000.00 */
    pvg_error err;
    assert_int_equal(
        pvg_store_foreach_user(g_store, PVG_FOREACH_REQUIRE_ANALYTICS, ref_user, r, &err), PVG_OK);
    assert_int_equal(pvg_ledger_set_budget(g_store, "he-test", 1.0, 1e-5, &err), PVG_OK);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(11);
    pvg_spend_options o = {.group_by = PVG_SPEND_BY_COUNTRY,
                           .dp = 1,
                           .epsilon = 0.5,
                           .delta = 1e-6,
                           .clamp = 1000.0,
                           .max_groups = 1,
                           .dataset = "he-test",
                           .rng = rng,
                           .allow_insecure_rng = 1};
    pvg_spend_result *res = NULL;
    pvg_status st = pvg_paillier_spend_total(g_store, g_pub, &o, &res, &err);
    if (st != PVG_OK) fail_msg("dp spend_total: %s", err.text);
    /* scale = clamp / (epsilon / 2) = 100000 / 0.25 cents */
    assert_true(res->noise_scale >= 400000.0 && res->noise_scale < 400002.0);
    assert_true(res->n >= 1);
    int noisy = 0;
    for (size_t i = 0; i < res->n; i++) {
        int g = ref_group(r, res->groups[i].name);
        assert_int_equal(res->groups[i].users, -1); /* counts are not released */
        long long got = decrypt_cents(res->groups[i].total);
        long long diff = llabs(got - r->clamped[g]);
        assert_true((double)diff < 50 * res->noise_scale); /* P(fail) < e^-50 */
        noisy += diff != 0;
    }
    assert_true(noisy > 0);
    pvg_ledger_summary sum;
    assert_int_equal(pvg_ledger_summary_get(g_store, "he-test", &sum, &err), PVG_OK);
    assert_true(fabs(sum.spent_epsilon - 0.5) < 1e-12);
    assert_int_equal(sum.releases, 1);
    pvg_spend_result_free(res);
    /* a second release that would overspend is refused, and nothing leaves */
    o.epsilon = 0.6;
    res = NULL;
    assert_int_equal(pvg_paillier_spend_total(g_store, g_pub, &o, &res, &err), PVG_ERR_BUDGET);
    assert_null(res);
    /* country grouping with DP requires delta */
    o.epsilon = 0.1;
    o.delta = 0;
    assert_int_equal(pvg_paillier_spend_total(g_store, g_pub, &o, &res, &err), PVG_ERR_INVALID);
    pvg_rng_free(rng);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_country_totals_exact),
        cmocka_unit_test(test_dp_totals_charged),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
