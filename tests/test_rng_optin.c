/*
 * test_rng_optin.c - the library's one test-only opt-in for the
 * deterministic generator (privguide/rng.h): every function that draws
 * keys, masks, shares or privacy noise refuses it with PVG_ERR_POLICY and
 * the same message unless its allow_insecure_rng argument or field is set,
 * and accepts it when set.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/dp.h>
#include <privguide/paillier.h>
#include <privguide/rng.h>
#include <privguide/secagg.h>

#include <string.h>

/* A refusal through the one mechanism: PVG_ERR_POLICY naming the opt-in. */
static void assert_refused(pvg_status st, const pvg_error *err)
{
    assert_int_equal(st, PVG_ERR_POLICY);
    assert_int_equal(err->code, PVG_ERR_POLICY);
    assert_non_null(strstr(err->text, "deterministic test generator"));
    assert_non_null(strstr(err->text, "allow_insecure_rng"));
}

static void require_secure(void **state)
{
    (void)state;
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(7);
    pvg_rng *sec = pvg_rng_new_secure();
    assert_non_null(det);
    assert_non_null(sec);
    pvg_error err;
    pvg_error_clear(&err);
    assert_refused(pvg_rng_require_secure(det, 0, "a test", &err), &err);
    assert_non_null(strstr(err.text, "a test"));
    assert_int_equal(pvg_rng_require_secure(det, 1, "a test", NULL), PVG_OK);
    assert_int_equal(pvg_rng_require_secure(sec, 0, "a test", NULL), PVG_OK);
    assert_int_equal(pvg_rng_require_secure(NULL, 0, "a test", NULL), PVG_OK);
    pvg_rng_free(det);
    pvg_rng_free(sec);
}

static void dp_mechanisms(void **state)
{
    (void)state;
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(7);
    assert_non_null(det);
    pvg_error err;
    int64_t out = 0;
    double real = 0;
    size_t idx = 0;
    const int64_t u[3] = {1, 5, 2};
    pvg_error_clear(&err);
    assert_refused(pvg_dp_laplace_int(det, 5, 1, 1.0, 0, &out, NULL, &err), &err);
    pvg_error_clear(&err);
    assert_refused(pvg_dp_gaussian_int(det, 5, 1, 1.0, 1e-6, 0, &out, NULL, &err), &err);
    pvg_error_clear(&err);
    assert_refused(pvg_dp_laplace_real(det, 5.0, 1.0, 1.0, 0, &real, NULL, &err), &err);
    pvg_error_clear(&err);
    assert_refused(pvg_dp_exponential(det, u, 3, 1, 1.0, 0, &idx, &err), &err);
    assert_int_equal(pvg_dp_laplace_int(det, 5, 1, 1.0, 1, &out, NULL, NULL), PVG_OK);
    assert_int_equal(pvg_dp_exponential(det, u, 3, 1, 1.0, 1, &idx, NULL), PVG_OK);
    assert_true(idx < 3);
    pvg_rng_free(det);
}

static void paillier(void **state)
{
    (void)state;
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(7);
    assert_non_null(det);
    pvg_paillier_pub *pub = NULL;
    pvg_paillier_priv *priv = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    assert_refused(pvg_paillier_keygen(2048, det, 0, &pub, &priv, &err), &err);
    assert_null(pub);
    assert_int_equal(pvg_paillier_keygen(2048, det, 1, &pub, &priv, NULL), PVG_OK);
    pvg_paillier_enc_options o = {.mode = PVG_PAILLIER_OBF_FRESH, .rng = det};
    pvg_paillier_enc *enc = NULL;
    pvg_error_clear(&err);
    assert_refused(pvg_paillier_enc_new(pub, &o, &enc, &err), &err);
    assert_null(enc);
    o.allow_insecure_rng = 1;
    assert_int_equal(pvg_paillier_enc_new(pub, &o, &enc, NULL), PVG_OK);
    pvg_paillier_enc_free(enc);
    pvg_paillier_priv_free(priv);
    pvg_paillier_pub_free(pub);
    pvg_rng_free(det);
}

static void secagg(void **state)
{
    (void)state;
    pvg_rng *det = pvg_rng_new_INSECURE_deterministic_for_tests(7);
    assert_non_null(det);
    pvg_secagg_params p = {.n = 3, .k = 2, .t = 2, .d = 4, .bits = 32};
    pvg_secagg_client *c = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    assert_refused(pvg_secagg_client_new(&p, 0, det, &c, &err), &err);
    pvg_error_clear(&err);
    assert_refused(pvg_secagg_client_new_ex(&p, 0, det, 0, &c, &err), &err);
    assert_null(c);
    assert_int_equal(pvg_secagg_client_new_ex(&p, 0, det, 1, &c, NULL), PVG_OK);
    pvg_secagg_client_free(c);

    pvg_secagg_sim_options so = {.params = p, .rng = det, .server_threads = 1};
    pvg_secagg_sim_result r;
    pvg_error_clear(&err);
    assert_refused(pvg_secagg_simulate(&so, &r, &err), &err);
    so.allow_insecure_rng = 1;
    assert_int_equal(pvg_secagg_simulate(&so, &r, NULL), PVG_OK);
    assert_true(r.exact);
    pvg_secagg_sim_result_clear(&r);

    pvg_mpc_table *mine = pvg_mpc_table_new(0);
    assert_non_null(mine);
    pvg_mpc_table *out = NULL;
    pvg_mpc_options mo = {.parties = 0, .rng = det};
    pvg_error_clear(&err);
    assert_refused(pvg_mpc_sum(&mo, mine, &out, &err), &err);
    /* with the opt-in the generator passes; the bad party count does not */
    mo.allow_insecure_rng = 1;
    assert_int_equal(pvg_mpc_sum(&mo, mine, &out, NULL), PVG_ERR_INVALID);
    assert_null(out);
    pvg_mpc_table_free(mine);
    pvg_rng_free(det);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(require_secure),
        cmocka_unit_test(dp_mechanisms),
        cmocka_unit_test(paillier),
        cmocka_unit_test(secagg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
