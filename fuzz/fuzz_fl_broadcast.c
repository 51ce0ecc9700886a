/*
 * fuzz_fl_broadcast.c - libFuzzer harness for the federated-training
 * broadcast parser (src/fl/fedcf.c): the input is a round's broadcast as a
 * client receives it; the harness runs the on-device recommender and the
 * client update (parse, user solve, clip, encode) on it with a fixed
 * three-item history. Every refusal must carry an error message; nothing
 * may crash, leak or read out of bounds. Seeds: fuzz/corpus/fl_broadcast/
 * (a valid broadcast of 5 items x 2 factors).
 */
#include "fuzz_common.h"

#include <privguide/fl.h>
#include <privguide/rng.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t items[3] = {0, 2, 4};
    uint32_t out[4];
    float sc[4];
    size_t n_out;
    pvg_error err;
    pvg_error_clear(&err);
    pvg_status st = pvg_fl_client_recommend(data, size, items, NULL, 3, 4, out, sc, &n_out, &err);
    fuzz_check_error(st, &err);
    if (size < 88) return 0;
    /* the dimension the header announces (the parser re-checks it) */
    pvg_fl_config c;
    pvg_fl_config_default(&c);
    uint32_t n_items;
    memcpy(&c.factors, data + 8, 4);
    memcpy(&n_items, data + 12, 4);
    memcpy(&c.bits, data + 20, 4);
    memcpy(&c.reg, data + 32, 8);
    memcpy(&c.alpha, data + 40, 8);
    memcpy(&c.alpha0, data + 48, 8);
    memcpy(&c.clip, data + 56, 8);
    memcpy(&c.noise_multiplier, data + 64, 8);
    memcpy(&c.expected_cohort, data + 72, 8);
    memcpy(&c.granularity, data + 80, 8);
    c.dp = data[5] <= 2 ? data[5] : 0;
    size_t d = pvg_fl_update_dim(&c, n_items);
    if (d == 0 || d > (1u << 20)) return 0;
    uint32_t *vec = malloc(d * sizeof *vec);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    if (vec && rng) {
        pvg_error_clear(&err);
        st = pvg_fl_client_update_ex(data, size, items, NULL, 3, rng, 1, vec, d, NULL, &err);
        fuzz_check_error(st, &err);
    }
    free(vec);
    pvg_rng_free(rng);
    return 0;
}
