/*
 * t_fl_decode.c - the federated tests' plain aggregate (t_fl_decode.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "t_fl_decode.h"

#include "fl/fl_internal.h"

#include <privguide/rng.h>

#include <stdlib.h>

void t_fl_decoded_sum(const pvg_fl_model *m, size_t n_items, const uint64_t *indptr,
                      const uint32_t *items, size_t n_users, const uint8_t *take,
                      const uint32_t *extra, size_t n_extra, double *out, float *factors, size_t k,
                      uint64_t seed)
{
    const pvg_fl_config *c = fl_model_config(m);
    fl_code code;
    assert_int_equal(fl_code_of(c, n_items, &code, NULL), PVG_OK);
    uint8_t *bc;
    size_t bl;
    assert_int_equal(pvg_fl_model_broadcast(m, &bc, &bl, NULL), PVG_OK);
    uint32_t *sum = calloc(code.d, sizeof *sum), *vec = calloc(code.d, sizeof *vec);
    assert_non_null(sum);
    assert_non_null(vec);
    pvg_rng *r = pvg_rng_new_INSECURE_deterministic_for_tests(seed);
    for (size_t u = 0; indptr && u < n_users; u++) {
        if (take && !take[u]) continue;
        uint64_t b = indptr[u];
        assert_int_equal(pvg_fl_client_update_ex(bc, bl, items + b, NULL,
                                                 (size_t)(indptr[u + 1] - b), r, 1, vec, code.d,
                                                 factors ? factors + u * k : NULL, NULL),
                         PVG_OK);
        for (size_t i = 0; i < code.d; i++)
            sum[i] += vec[i];
    }
    if (extra) {
        assert_int_equal(
            pvg_fl_client_update_ex(bc, bl, extra, NULL, n_extra, r, 1, vec, code.d, NULL, NULL),
            PVG_OK);
        for (size_t i = 0; i < code.d; i++)
            sum[i] += vec[i];
    }
    assert_int_equal(fl_decode(c, &code, pvg_fl_model_round(m), sum, 0, NULL, out, NULL), PVG_OK);
    free(sum);
    free(vec);
    free(bc);
    pvg_rng_free(r);
}
