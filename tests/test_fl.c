/*
 * test_fl.c - federated iALS (privguide/fl.h): the encoding for secure
 * aggregation (round trip, sums, clipping and the neighbouring bound), the
 * distributed discrete Gaussian's variance, the strict broadcast parser,
 * the accountant, on-device recommendations, a round through the SecAgg
 * simulator, and a small synthetic run against exact centralised iALS.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fl/fl_internal.h"
#include "model/model_internal.h"
#include "t_fl_decode.h"

#include <privguide/dp.h>
#include <privguide/fl.h>
#include <privguide/secagg.h>

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static pvg_fl_config small_cfg(void)
{
    pvg_fl_config c;
    pvg_fl_config_default(&c);
    c.factors = 4;
    c.reg = 0.05;
    c.alpha0 = 0.1;
    c.clip = 10;
    c.expected_cohort = 20;
    c.seed = 7;
    c.allow_insecure_rng = 1;
    return c;
}

static double norm2(const double *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i] * x[i];
    return sqrt(s);
}

/* A client's real update (before encoding), via a round trip at a fine
 * granularity is not available from the API; the tests build raw vectors
 * and use fl_encode / fl_decode directly. */
static void test_encode_decode_roundtrip(void **state)
{
    (void)state;
    pvg_fl_config c = small_cfg();
    fl_code code;
    assert_int_equal(fl_code_of(&c, 30, &code, NULL), PVG_OK);
    assert_int_equal(code.d % code.block, 0);
    assert_true(code.d >= code.d_raw);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    double *u = calloc(code.d, sizeof *u), *want = calloc(code.d, sizeof *want);
    double *out = calloc(code.d, sizeof *out);
    uint32_t *vec = calloc(code.d, sizeof *vec);
    for (size_t i = 0; i < code.d_raw; i++)
        want[i] = u[i] = 0.3 * pvg_rng_normal(rng);
    assert_true(norm2(want, code.d_raw) < c.clip); /* not clipped */
    assert_int_equal(fl_encode(&c, &code, 3, u, rng, vec, NULL), PVG_OK);
    assert_int_equal(fl_decode(&c, &code, 3, vec, 0, NULL, out, NULL), PVG_OK);
    /* the only error is the rounding: < 1 step per rotated coordinate, and
     * the rotation is orthonormal */
    double e = 0;
    for (size_t i = 0; i < code.d; i++)
        e += (out[i] - want[i]) * (out[i] - want[i]);
    assert_true(sqrt(e) <= code.gamma * sqrt((double)code.d));
    /* the padding decodes to (near) zero, the rest to the input */
    for (size_t i = 0; i < code.d_raw; i++)
        assert_true(fabs(out[i] - want[i]) < 1e-4);
    /* a different round's rotation does not decode it */
    assert_int_equal(fl_decode(&c, &code, 4, vec, 0, NULL, out, NULL), PVG_OK);
    e = 0;
    for (size_t i = 0; i < code.d_raw; i++)
        e += fabs(out[i] - want[i]);
    assert_true(e > 1.0);
    /* an integer vector is decoded exactly: encode(decode(v)) == v */
    free(u);
    free(want);
    free(out);
    free(vec);
    pvg_rng_free(rng);
}

/* The encoding as specified, written out densely and independently of
 * fl_dp.c: clip, signs (BLAKE2b-keyed ChaCha20 bits), normalised
 * Walsh-Hadamard per block, randomised rounding with one pvg_rng_double a
 * coordinate of every block that holds an entry (an empty block is zero and
 * takes no draw), retried until the norm fits; mod 2^bits. */
static int ref_encode(const pvg_fl_config *c, const fl_code *code, uint32_t round,
                      const double *u_in, pvg_rng *rng, uint32_t *vec)
{
    size_t d = code->d, B = code->block;
    double *u = calloc(d, sizeof *u);
    memcpy(u, u_in, code->d_raw * sizeof *u);
    double nrm = norm2(u, code->d_raw), s = (nrm > c->clip ? c->clip / nrm : 1.0) / code->gamma;
    uint8_t key[32], in[12];
    static const char ctx[] = "privguide-fl-rotation-v1";
    for (int i = 0; i < 8; i++)
        in[i] = (uint8_t)(c->seed >> (8 * i));
    for (int i = 0; i < 4; i++)
        in[8 + i] = (uint8_t)(round >> (8 * i));
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, sizeof key);
    crypto_generichash_update(&h, (const unsigned char *)ctx, sizeof ctx - 1);
    crypto_generichash_update(&h, in, sizeof in);
    crypto_generichash_final(&h, key, sizeof key);
    uint8_t *bits = malloc((d + 7) / 8);
    randombytes_buf_deterministic(bits, (d + 7) / 8, key);
    for (size_t i = 0; i < d; i++)
        u[i] = (bits[i / 8] >> (i % 8) & 1) ? -(u[i] * s) : u[i] * s;
    for (size_t b = 0; b < d; b += B) {
        double *y = u + b;
        for (size_t hh = 1; hh < B; hh *= 2)
            for (size_t i = 0; i < B; i += 2 * hh)
                for (size_t j = i; j < i + hh; j++) {
                    double a = y[j], z = y[j + hh];
                    y[j] = a + z;
                    y[j + hh] = a - z;
                }
        for (size_t i = 0; i < B; i++)
            y[i] *= 1.0 / sqrt((double)B);
    }
    int ok = 0;
    for (int tries = 0; tries < 200 && !ok; tries++) {
        double n2 = 0;
        for (size_t b = 0; b < d; b += B) {
            int any = 0;
            for (size_t i = b; i < b + B && i < code->d_raw; i++)
                any |= u_in[i] != 0;
            for (size_t i = b; i < b + B; i++) {
                double f = floor(u[i]), r = any && pvg_rng_double(rng) < u[i] - f ? f + 1 : f;
                n2 += r * r;
                vec[i] = (uint32_t)(int64_t)r;
            }
        }
        ok = n2 <= code->bound * code->bound;
    }
    for (size_t i = 0; i < d && c->bits < 32; i++)
        vec[i] &= (1u << c->bits) - 1u;
    free(u);
    free(bits);
    return ok;
}

/* The client encodes its update from its nonzero entries one block at a
 * time: the same words as the dense specification, for a sparse update (most
 * blocks empty, as a shopper's), a dense one and a clipped one. */
static void test_sparse_encoding_matches_dense_reference(void **state)
{
    (void)state;
    for (int form = 0; form < 3; form++) {
        pvg_fl_config c = small_cfg();
        c.bits = form == 1 ? 16 : 32;
        c.granularity = c.clip / 4096;
        fl_code code;
        assert_int_equal(fl_code_of(&c, 3000, &code, NULL), PVG_OK);
        assert_true(code.d / code.block >= 3);
        pvg_rng *g = pvg_rng_new_INSECURE_deterministic_for_tests(11 + (uint64_t)form);
        double *u = calloc(code.d, sizeof *u);
        for (size_t i = 0; i < code.d_raw; i++)
            if (form == 1 || (i % 997 == 3 && i < code.d_raw / 3) || i + 5 >= code.d_raw)
                u[i] = (form == 2 ? 30.0 : 0.01) * pvg_rng_normal(g);
        pvg_rng_free(g);
        uint32_t *want = calloc(code.d, sizeof *want), *got = calloc(code.d, sizeof *got);
        pvg_rng *r1 = pvg_rng_new_INSECURE_deterministic_for_tests(5);
        pvg_rng *r2 = pvg_rng_new_INSECURE_deterministic_for_tests(5);
        assert_true(ref_encode(&c, &code, 9, u, r1, want));
        assert_int_equal(fl_encode(&c, &code, 9, u, r2, got, NULL), PVG_OK);
        assert_memory_equal(got, want, code.d * sizeof *got);
        /* the rng stands at the same place: the same draws were taken */
        assert_int_equal(pvg_rng_u64(r1), pvg_rng_u64(r2));
        size_t nz = 0;
        for (size_t i = 0; i < code.d; i++)
            nz += got[i] != 0;
        assert_true(nz > 0);
        free(u);
        free(want);
        free(got);
        pvg_rng_free(r1);
        pvg_rng_free(r2);
    }
    /* entries out of order are refused */
    pvg_fl_config c = small_cfg();
    fl_code code;
    assert_int_equal(fl_code_of(&c, 30, &code, NULL), PVG_OK);
    uint32_t idx[2] = {5, 3};
    double val[2] = {1, 1};
    uint32_t *vec = calloc(code.d, sizeof *vec);
    pvg_rng *r = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    assert_int_equal(fl_encode_sparse(&c, &code, 0, idx, val, 2, r, vec, NULL), PVG_ERR_INTERNAL);
    pvg_rng_free(r);
    free(vec);
}

/* n clients with random histories over a small catalog. */
typedef struct toy {
    size_t n_users;
    uint32_t n_items;
    uint64_t *indptr;
    uint32_t *items;
} toy;

static void toy_new(toy *t, size_t n_users, uint32_t n_items, size_t per_user, uint64_t seed)
{
    pvg_rng *r = pvg_rng_new_INSECURE_deterministic_for_tests(seed);
    t->n_users = n_users;
    t->n_items = n_items;
    t->indptr = calloc(n_users + 1, sizeof *t->indptr);
    t->items = calloc(n_users * per_user, sizeof *t->items);
    size_t m = 0;
    for (size_t u = 0; u < n_users; u++) {
        /* two taste groups: even users like the low half of the catalog */
        uint32_t lo = (u % 2) ? n_items / 2 : 0;
        uint8_t *seen = calloc(n_items, 1);
        for (size_t i = 0; i < per_user; i++) {
            uint32_t it = lo + (uint32_t)pvg_rng_uniform(r, n_items / 2);
            if (pvg_rng_double(r) < 0.1) it = (uint32_t)pvg_rng_uniform(r, n_items);
            if (seen[it]) continue;
            seen[it] = 1;
            t->items[m++] = it;
        }
        /* ascending */
        size_t b = t->indptr[u];
        for (size_t i = b; i < m; i++)
            for (size_t j = i + 1; j < m; j++)
                if (t->items[j] < t->items[i]) {
                    uint32_t x = t->items[i];
                    t->items[i] = t->items[j];
                    t->items[j] = x;
                }
        t->indptr[u + 1] = m;
        free(seen);
    }
    pvg_rng_free(r);
}

static void toy_free(toy *t)
{
    free(t->indptr);
    free(t->items);
}

/* Decoded sum of the clients' updates (mask: which clients take part). */
static void decoded_sum(pvg_fl_model *m, const toy *t, const uint8_t *take, const uint32_t *extra,
                        size_t n_extra, double *out, uint64_t seed)
{
    t_fl_decoded_sum(m, t->n_items, t->indptr, t->items, t->n_users, take, extra, n_extra, out,
                     NULL, 0, seed);
}

/* The sum of the encoded updates decodes to the sum of the clients'
 * (clipped) updates: checked against each client decoded alone. */
static void test_sum_of_encoded_updates(void **state)
{
    (void)state;
    pvg_fl_config c = small_cfg();
    toy t;
    toy_new(&t, 20, 40, 8, 3);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(2);
    pvg_fl_model *m;
    assert_int_equal(pvg_fl_model_new(&c, t.n_items, rng, &m, NULL), PVG_OK);
    fl_code code;
    assert_int_equal(fl_code_of(&c, t.n_items, &code, NULL), PVG_OK);
    double *all = calloc(code.d, sizeof *all), *one = calloc(code.d, sizeof *one);
    double *acc = calloc(code.d, sizeof *acc);
    decoded_sum(m, &t, NULL, NULL, 0, all, 5);
    uint8_t *take = calloc(t.n_users, 1);
    for (size_t u = 0; u < t.n_users; u++) {
        memset(take, 0, t.n_users);
        take[u] = 1;
        decoded_sum(m, &t, take, NULL, 0, one, 100 + u);
        for (size_t i = 0; i < code.d; i++)
            acc[i] += one[i];
    }
    /* each decoded vector is within its rounding error of the true update,
     * so the sums agree to 2 n gamma sqrt(d) */
    double e = 0;
    for (size_t i = 0; i < code.d; i++)
        e += (all[i] - acc[i]) * (all[i] - acc[i]);
    assert_true(sqrt(e) <= 2.0 * (double)t.n_users * code.gamma * sqrt((double)code.d));
    /* and the sum is not trivial: the item-count block holds the history sizes */
    double cnt = 0;
    for (size_t j = 0; j < t.n_items; j++)
        cnt += all[(size_t)t.n_items * c.factors + j] / PVG_FL_SCALE_N;
    assert_true(fabs(cnt - (double)t.indptr[t.n_users]) < 1e-3);
    free(take);
    free(all);
    free(one);
    free(acc);
    pvg_fl_model_free(m);
    pvg_rng_free(rng);
    toy_free(&t);
}

/* The largest decoding error, relative to the true sum's largest coordinate, of M
 * identical clipped updates (all aligned, the worst case for the wrap bound) summed mod 2^bits
 * under config c for n_items. */
static double aligned_sum_error(const pvg_fl_config *c, uint32_t n_items, uint32_t M)
{
    fl_code code;
    assert_int_equal(fl_code_of(c, n_items, &code, NULL), PVG_OK);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(M);
    double *u0 = calloc(code.d, sizeof *u0), *u = calloc(code.d, sizeof *u);
    double *out = calloc(code.d, sizeof *out);
    uint32_t *vec = calloc(code.d, sizeof *vec), *sum = calloc(code.d, sizeof *sum);
    for (size_t i = 0; i < code.d_raw; i++)
        u0[i] = c->clip / sqrt((double)code.d_raw) * (i % 3 ? 1 : -1); /* norm = clip */
    uint32_t mask = c->bits == 32 ? 0xffffffffu : (1u << c->bits) - 1;
    for (uint32_t m = 0; m < M; m++) {
        memcpy(u, u0, code.d * sizeof *u);
        assert_int_equal(fl_encode(c, &code, 1, u, rng, vec, NULL), PVG_OK);
        for (size_t i = 0; i < code.d; i++)
            sum[i] = (sum[i] + vec[i]) & mask;
    }
    assert_int_equal(fl_decode(c, &code, 1, sum, 0, NULL, out, NULL), PVG_OK);
    double worst = 0, top = 0;
    for (size_t i = 0; i < code.d_raw; i++) {
        double want = (double)M * u0[i];
        if (fabs(out[i] - want) > worst) worst = fabs(out[i] - want);
        if (fabs(want) > top) top = fabs(want);
    }
    free(u0);
    free(u);
    free(out);
    free(vec);
    free(sum);
    pvg_rng_free(rng);
    return worst / top;
}

/* The encoding's step is chosen for the most clients a round may sum
 * (pvg_fl_config_for_cohort): the default config's step, chosen for an
 * expected cohort of 100, wraps a 32-bit lane when 2,000 aligned updates are
 * summed, and pvg_fl_config_check_cohort says so; the step for 2,000 does
 * not. A 16-bit lane with distributed DP leaves room for max_cohort noise
 * shares, splits the noise over the survivor floor, and refuses a cohort it
 * cannot hold, naming the field. */
static void test_config_for_cohort(void **state)
{
    (void)state;
    const uint32_t n_items = 20, M = 2000;
    pvg_fl_config c = small_cfg();
    c.expected_cohort = 100; /* the default's */
    pvg_error err;
    assert_int_equal(pvg_fl_config_check_cohort(&c, n_items, 100, 3, &err), PVG_OK);
    assert_int_equal(pvg_fl_config_check_cohort(&c, n_items, M, 3, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "max_cohort");
    assert_true(aligned_sum_error(&c, n_items, M) > 0.5); /* it wrapped */

    pvg_fl_config w = c;
    assert_int_equal(pvg_fl_config_for_cohort(&w, n_items, 32, M, 3, &err), PVG_OK);
    assert_int_equal(w.bits, 32);
    assert_true(w.expected_cohort == M);
    assert_true(w.granularity > 0);
    assert_int_equal(pvg_fl_config_check_cohort(&w, n_items, M, 3, &err), PVG_OK);
    assert_true(aligned_sum_error(&w, n_items, M) < 1e-3);
    /* room for SecAgg's largest cohort at 32 bits, still far finer than the clip */
    w = c;
    assert_int_equal(pvg_fl_config_for_cohort(&w, n_items, 32, PVG_FL_MAX_COHORT, 3, &err), PVG_OK);
    assert_true(w.granularity < c.clip / 1e4);

    /* 16 bits, distributed DP */
    pvg_fl_config d = small_cfg();
    d.dp = PVG_FL_DP_DISTRIBUTED;
    d.noise_multiplier = 1.0;
    assert_int_equal(pvg_fl_config_for_cohort(&d, n_items, 16, 50, 10, &err), PVG_OK);
    assert_int_equal(d.bits, 16);
    assert_true(d.expected_cohort == 10);
    assert_int_equal(pvg_fl_config_check_cohort(&d, n_items, 50, 10, &err), PVG_OK);
    assert_int_equal(pvg_fl_config_check_cohort(&d, n_items, 500, 10, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "max_cohort");
    assert_non_null(strstr(err.text, "16-bit lane cannot hold"));
    assert_int_equal(pvg_fl_config_check_cohort(&d, n_items, 50, 9, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "min_survivors");
    /* the step for 50 with noise: the aligned sum decodes within the noise-free bound */
    d.dp = PVG_FL_DP_NONE; /* the same step, without drawing noise */
    assert_true(aligned_sum_error(&d, n_items, 50) < 0.05);
    d.dp = PVG_FL_DP_DISTRIBUTED;
    /* too many clients for 16 bits, and bad arguments, leave cfg alone */
    pvg_fl_config keep = d;
    assert_int_equal(pvg_fl_config_for_cohort(&d, n_items, 16, 60000, 10, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "max_cohort");
    assert_memory_equal(&d, &keep, sizeof d);
    assert_int_equal(pvg_fl_config_for_cohort(&d, n_items, 24, 50, 10, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "lane_bits");
    assert_int_equal(pvg_fl_config_for_cohort(&d, n_items, 16, 50, 60, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "min_survivors");
    assert_int_equal(pvg_fl_config_for_cohort(&d, n_items, 16, 0, 10, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "max_cohort");
    assert_memory_equal(&d, &keep, sizeof d);
}

/* Clipping: one client with a huge history moves the decoded sum by at
 * most C plus the rounding bound (the neighbouring relation of the DP
 * guarantee: add or remove one shopper). */
static void test_clipping_bounds_one_client(void **state)
{
    (void)state;
    pvg_fl_config c = small_cfg();
    c.clip = 0.5;
    toy t;
    toy_new(&t, 10, 200, 10, 4);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(3);
    pvg_fl_model *m;
    assert_int_equal(pvg_fl_model_new(&c, t.n_items, rng, &m, NULL), PVG_OK);
    /* a few rounds so that the factors (and updates) are not tiny */
    fl_clients cl = {t.n_users, t.n_items, t.indptr, t.items, NULL};
    for (int r = 0; r < 3; r++)
        assert_int_equal(fl_sim_round(m, &cl, 1.0, rng, NULL, NULL), PVG_OK);
    fl_code code;
    assert_int_equal(fl_code_of(&c, t.n_items, &code, NULL), PVG_OK);
    uint32_t *huge = malloc(t.n_items * sizeof *huge);
    for (uint32_t i = 0; i < t.n_items; i++)
        huge[i] = i;
    double *with = calloc(code.d, sizeof *with), *without = calloc(code.d, sizeof *without);
    decoded_sum(m, &t, NULL, huge, t.n_items, with, 9);
    decoded_sum(m, &t, NULL, NULL, 0, without, 9);
    double e = 0;
    for (size_t i = 0; i < code.d; i++)
        e += (with[i] - without[i]) * (with[i] - without[i]);
    /* the huge client's unclipped update is far larger than C: */
    double diff = sqrt(e);
    assert_true(diff > 0.5 * c.clip);
    /* the rounded vector has norm <= bound steps; the others' rounding
     * differs between the two runs by at most 2 n gamma sqrt(d) */
    assert_true(diff <= code.gamma * code.bound +
                            2.0 * (double)t.n_users * code.gamma * sqrt((double)code.d));
    assert_true(code.gamma * code.bound <= c.clip * 1.01);
    free(huge);
    free(with);
    free(without);
    pvg_fl_model_free(m);
    pvg_rng_free(rng);
    toy_free(&t);
}

/* Distributed discrete Gaussian: n clients' shares sum to noise of
 * variance sigma^2 = (z B)^2 per coordinate. */
static void test_ddg_noise_variance(void **state)
{
    (void)state;
    pvg_fl_config c = small_cfg();
    c.dp = PVG_FL_DP_DISTRIBUTED;
    c.noise_multiplier = 1.0;
    c.expected_cohort = 10;
    c.granularity = c.clip / 200.0; /* small integers: the sampler is fast */
    fl_code code;
    assert_int_equal(fl_code_of(&c, 200, &code, NULL), PVG_OK);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(11);
    uint32_t *sum = calloc(code.d, sizeof *sum), *vec = calloc(code.d, sizeof *vec);
    double *u = calloc(code.d, sizeof *u);
    for (int i = 0; i < 10; i++) {
        memset(u, 0, code.d * sizeof *u); /* zero update: the sum is the noise */
        assert_int_equal(fl_encode(&c, &code, 0, u, rng, vec, NULL), PVG_OK);
        for (size_t j = 0; j < code.d; j++)
            sum[j] += vec[j];
    }
    double s2 = 0, s1 = 0;
    for (size_t j = 0; j < code.d; j++) {
        double x = (double)(int32_t)sum[j];
        s1 += x;
        s2 += x * x;
    }
    double n = (double)code.d, mean = s1 / n, var = s2 / n - mean * mean;
    double want = 10.0 * (double)code.noise_num / (double)code.noise_den;
    assert_true(fabs(want - code.sigma * code.sigma) <= 0.02 * want + 10);
    /* the variance estimate's relative std error is sqrt(2/n) */
    assert_true(fabs(var / want - 1.0) < 5.0 * sqrt(2.0 / n));
    assert_true(fabs(mean) < 5.0 * sqrt(want / n));
    /* the deterministic generator is refused for a noise share without the opt-in */
    c.allow_insecure_rng = 0;
    assert_int_equal(fl_encode(&c, &code, 0, u, rng, vec, NULL), PVG_ERR_POLICY);
    free(sum);
    free(vec);
    free(u);
    pvg_rng_free(rng);
}

static void test_client_refuses_insecure_rng_for_ddg(void **state)
{
    (void)state;
    pvg_fl_config c = small_cfg();
    c.dp = PVG_FL_DP_DISTRIBUTED;
    c.noise_multiplier = 1.0;
    c.allow_insecure_rng = 1; /* the server's opt-in does not travel */
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    pvg_fl_model *m;
    assert_int_equal(pvg_fl_model_new(&c, 30, rng, &m, NULL), PVG_OK);
    uint8_t *bc;
    size_t bl;
    assert_int_equal(pvg_fl_model_broadcast(m, &bc, &bl, NULL), PVG_OK);
    size_t d = pvg_fl_update_dim(&c, 30);
    uint32_t *vec = calloc(d, sizeof *vec), items[3] = {1, 5, 9};
    pvg_error err;
    assert_int_equal(pvg_fl_client_update(bc, bl, items, NULL, 3, rng, vec, d, NULL, &err),
                     PVG_ERR_POLICY);
    pvg_rng *sec = pvg_rng_new_secure();
    assert_int_equal(pvg_fl_client_update(bc, bl, items, NULL, 3, sec, vec, d, NULL, &err), PVG_OK);
    /* an item outside the catalog, a wrong dimension */
    items[1] = 30;
    assert_int_equal(pvg_fl_client_update(bc, bl, items, NULL, 3, sec, vec, d, NULL, &err),
                     PVG_ERR_INVALID);
    assert_int_equal(err.offset, 1);
    items[1] = 5;
    assert_int_equal(pvg_fl_client_update(bc, bl, items, NULL, 3, sec, vec, d - 1, NULL, &err),
                     PVG_ERR_INVALID);
    free(vec);
    free(bc);
    pvg_fl_model_free(m);
    pvg_rng_free(rng);
    pvg_rng_free(sec);
}

static void test_broadcast_parser(void **state)
{
    (void)state;
    pvg_fl_config c = small_cfg();
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(1);
    pvg_fl_model *m;
    assert_int_equal(pvg_fl_model_new(&c, 25, rng, &m, NULL), PVG_OK);
    uint8_t *bc;
    size_t bl;
    assert_int_equal(pvg_fl_model_broadcast(m, &bc, &bl, NULL), PVG_OK);
    assert_int_equal(bl, PVG_FL_HEADER + 4 * (25 * 4 + 16));
    size_t d = pvg_fl_update_dim(&c, 25);
    uint32_t *vec = calloc(d, sizeof *vec), items[2] = {0, 3};
    pvg_error err;
    assert_int_equal(pvg_fl_client_update(bc, bl, items, NULL, 2, rng, vec, d, NULL, &err), PVG_OK);
    /* truncated anywhere: refused with the length as the offset */
    for (size_t len = 0; len < bl; len += (len < 100 ? 1 : 37)) {
        pvg_error_clear(&err);
        pvg_status st = pvg_fl_client_update(bc, len, items, NULL, 2, rng, vec, d, NULL, &err);
        assert_int_not_equal(st, PVG_OK);
        if (len >= 8) assert_int_equal(err.offset, (long long)len);
    }
    /* oversized: the offset of the first extra byte */
    uint8_t *big = malloc(bl + 3);
    memcpy(big, bc, bl);
    memset(big + bl, 0, 3);
    assert_int_equal(pvg_fl_client_update(big, bl + 3, items, NULL, 2, rng, vec, d, NULL, &err),
                     PVG_ERR_CORRUPT);
    assert_int_equal(err.offset, (long long)bl);
    /* wrong version */
    memcpy(big, bc, bl);
    big[4] = 2;
    assert_int_equal(pvg_fl_client_update(big, bl, items, NULL, 2, rng, vec, d, NULL, &err),
                     PVG_ERR_UNSUPPORTED);
    assert_int_equal(err.offset, 4);
    /* bad magic, reserved byte, absurd factors, non-finite factor */
    memcpy(big, bc, bl);
    big[0] = 'X';
    assert_int_equal(pvg_fl_client_update(big, bl, items, NULL, 2, rng, vec, d, NULL, &err),
                     PVG_ERR_CORRUPT);
    memcpy(big, bc, bl);
    big[7] = 2; /* the update form: 0 or 1 */
    assert_int_equal(pvg_fl_client_update(big, bl, items, NULL, 2, rng, vec, d, NULL, &err),
                     PVG_ERR_CORRUPT);
    assert_int_equal(err.offset, 7);
    memcpy(big, bc, bl);
    big[8] = 0xff;
    big[9] = 0xff;
    assert_int_not_equal(pvg_fl_client_update(big, bl, items, NULL, 2, rng, vec, d, NULL, &err),
                         PVG_OK);
    memcpy(big, bc, bl);
    float nan = NAN;
    memcpy(big + PVG_FL_HEADER + 4 * 10, &nan, 4);
    assert_int_equal(pvg_fl_client_update(big, bl, items, NULL, 2, rng, vec, d, NULL, &err),
                     PVG_ERR_CORRUPT);
    assert_int_equal(err.offset, PVG_FL_HEADER + 4 * 10);
    /* a granularity so fine that a clipped coordinate would not fit the
     * modulus (or a 64-bit integer) */
    memcpy(big, bc, bl);
    double tiny = 1e-300;
    memcpy(big + 80, &tiny, 8);
    assert_int_equal(pvg_fl_client_update(big, bl, items, NULL, 2, rng, vec, d, NULL, &err),
                     PVG_ERR_CORRUPT);
    assert_int_equal(err.offset, 8);
    /* the header as the transport checks it against the client's policy */
    pvg_fl_config got;
    uint32_t rnd, nit;
    assert_int_equal(pvg_fl_broadcast_info(bc, bl, &got, &rnd, &nit, NULL), PVG_OK);
    assert_int_equal(got.factors, c.factors);
    assert_int_equal(got.dp, c.dp);
    assert_int_equal(got.allow_insecure_rng, 0);
    assert_true(got.clip == c.clip);
    assert_int_equal(rnd, 0);
    assert_int_equal(nit, 25);
    assert_int_equal(pvg_fl_broadcast_info(bc, bl - 1, &got, &rnd, &nit, &err), PVG_ERR_CORRUPT);
    /* n_items claiming a huge catalog: refused before any allocation */
    memcpy(big, bc, bl);
    big[12] = big[13] = big[14] = 0xff;
    big[15] = 0x7f;
    assert_int_equal(pvg_fl_client_update(big, bl, items, NULL, 2, rng, vec, d, NULL, &err),
                     PVG_ERR_CORRUPT);
    free(big);
    free(vec);
    free(bc);
    pvg_fl_model_free(m);
    pvg_rng_free(rng);
}

static void test_accountant(void **state)
{
    (void)state;
    pvg_fl_config c = small_cfg();
    c.dp = PVG_FL_DP_CENTRAL;
    c.noise_multiplier = 1.0;
    double e1, e2, e10, eq;
    /* q = 1, one round: the Gaussian mechanism with sigma = 1; its exact
     * epsilon at delta 1e-5 (Balle & Wang) is a lower bound, the zCDP
     * bound rho + 2 sqrt(rho log(1/delta)) = 5.298 an upper one */
    assert_int_equal(pvg_fl_epsilon(&c, 1.0, 1, 1e-5, &e1, NULL), PVG_OK);
    double lo = 0, hi = 20;
    for (int i = 0; i < 100; i++) {
        double mid = (lo + hi) / 2;
        if (pvg_dp_gaussian_delta(1.0, mid, 1.0) > 1e-5)
            lo = mid;
        else
            hi = mid;
    }
    assert_true(e1 >= hi - 1e-9);
    assert_true(e1 <= 0.5 + 2 * sqrt(0.5 * log(1e5)));
    /* monotone in rounds, smaller with subsampling */
    assert_int_equal(pvg_fl_epsilon(&c, 1.0, 2, 1e-5, &e2, NULL), PVG_OK);
    assert_int_equal(pvg_fl_epsilon(&c, 1.0, 10, 1e-5, &e10, NULL), PVG_OK);
    assert_true(e1 < e2 && e2 < e10);
    assert_int_equal(pvg_fl_epsilon(&c, 0.1, 10, 1e-5, &eq, NULL), PVG_OK);
    assert_true(eq < e10);
    double prev = 0;
    for (uint32_t r = 1; r <= 64; r *= 2) {
        double e;
        assert_int_equal(pvg_fl_epsilon(&c, 0.05, r, 1e-6, &e, NULL), PVG_OK);
        assert_true(e > prev);
        prev = e;
    }
    /* distributed: the same up to the negligible tau term */
    pvg_fl_config d = c;
    d.dp = PVG_FL_DP_DISTRIBUTED;
    double ed;
    assert_int_equal(pvg_fl_epsilon(&d, 0.1, 10, 1e-5, &ed, NULL), PVG_OK);
    assert_true(ed >= eq && ed < eq * (1 + 1e-9));
    /* no DP: infinite; bad inputs refused */
    c.dp = PVG_FL_DP_NONE;
    assert_int_equal(pvg_fl_epsilon(&c, 0.1, 10, 1e-5, &e1, NULL), PVG_OK);
    assert_true(isinf(e1));
    assert_int_equal(pvg_fl_epsilon(&d, 1.5, 10, 1e-5, &e1, NULL), PVG_ERR_INVALID);
    assert_int_equal(pvg_fl_epsilon(&d, 0.5, 10, 0, &e1, NULL), PVG_ERR_INVALID);
}

/* Exact centralised iALS with the same loss (the reference): alternating
 * Cholesky solves (pvg_cholesky_solve, tested in test_model). */
/* Solves rows of X (n_rows) given Y (n_cols) over a row-major 0/1 matrix. */
static void als_half(const uint8_t *M, size_t nr, size_t ncl, int by_col, const double *Y,
                     double *X, size_t f, double reg, double a0)
{
    double *G = calloc(f * f, sizeof *G), *A = malloc(f * f * sizeof *A),
           *b = malloc(f * sizeof *b);
    for (size_t j = 0; j < ncl; j++)
        for (size_t p = 0; p < f; p++)
            for (size_t q = 0; q < f; q++)
                G[p * f + q] += Y[j * f + p] * Y[j * f + q];
    for (size_t r = 0; r < nr; r++) {
        size_t cnt = 0;
        memset(b, 0, f * sizeof *b);
        for (size_t p = 0; p < f * f; p++)
            A[p] = a0 * G[p];
        for (size_t j = 0; j < ncl; j++) {
            uint8_t v = by_col ? M[j * nr + r] : M[r * ncl + j];
            if (!v) continue;
            cnt++;
            for (size_t p = 0; p < f; p++) {
                b[p] += Y[j * f + p];
                for (size_t q = 0; q < f; q++)
                    A[p * f + q] += (1 - a0) * Y[j * f + p] * Y[j * f + q];
            }
        }
        for (size_t p = 0; p < f; p++)
            A[p * f + p] += reg * ((double)cnt + a0 * (double)ncl);
        assert_int_equal(pvg_cholesky_solve(A, f, b), 0);
        memcpy(X + r * f, b, f * sizeof *b);
    }
    free(G);
    free(A);
    free(b);
}

/* Recall@10 on held-out items of factors U (users) and V (items). */
static double recall_of(const toy *train, const toy *test, const float *V, size_t f,
                        const pvg_fl_model *m, const double *Uref)
{
    double tot = 0;
    int users = 0;
    float *x = malloc(f * sizeof *x), *sc = malloc(train->n_items * sizeof *sc);
    for (size_t u = 0; u < train->n_users; u++) {
        uint64_t b = train->indptr[u], e = train->indptr[u + 1];
        if (test->indptr[u + 1] == test->indptr[u]) continue;
        if (m)
            assert_int_equal(fl_model_user_factor(m, train->items + b, NULL, e - b, x, NULL),
                             PVG_OK);
        else
            for (size_t a = 0; a < f; a++)
                x[a] = (float)Uref[u * f + a];
        for (uint32_t j = 0; j < train->n_items; j++) {
            double s = 0;
            for (size_t a = 0; a < f; a++)
                s += (double)x[a] * V[j * f + a];
            sc[j] = (float)s;
        }
        for (uint64_t i = b; i < e; i++)
            sc[train->items[i]] = -INFINITY;
        int hits = 0, nt = (int)(test->indptr[u + 1] - test->indptr[u]);
        for (int r = 0; r < 10; r++) {
            uint32_t best = 0;
            for (uint32_t j = 1; j < train->n_items; j++)
                if (sc[j] > sc[best]) best = j;
            for (uint64_t i = test->indptr[u]; i < test->indptr[u + 1]; i++)
                hits += test->items[i] == best;
            sc[best] = -INFINITY;
        }
        tot += (double)hits / (double)(nt < 10 ? nt : 10);
        users++;
    }
    free(x);
    free(sc);
    return tot / users;
}

static void test_synthetic_run_approaches_centralised(void **state)
{
    (void)state;
    toy all;
    toy_new(&all, 120, 60, 16, 21);
    /* hold out every 4th item of each user */
    toy tr = {all.n_users, all.n_items, calloc(all.n_users + 1, 8),
              calloc(all.indptr[all.n_users], 4)};
    toy te = {all.n_users, all.n_items, calloc(all.n_users + 1, 8),
              calloc(all.indptr[all.n_users], 4)};
    size_t a = 0, b = 0;
    uint8_t *M = calloc((size_t)all.n_users * all.n_items, 1);
    for (size_t u = 0; u < all.n_users; u++) {
        for (uint64_t i = all.indptr[u]; i < all.indptr[u + 1]; i++) {
            if ((i - all.indptr[u]) % 4 == 3)
                te.items[b++] = all.items[i];
            else {
                tr.items[a++] = all.items[i];
                M[u * all.n_items + all.items[i]] = 1;
            }
        }
        tr.indptr[u + 1] = a;
        te.indptr[u + 1] = b;
    }
    pvg_fl_config c = small_cfg();
    c.factors = 6;
    c.reg = 0.02;
    c.alpha0 = 0.2;
    c.clip = 1e3;
    c.expected_cohort = (double)all.n_users;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(5);
    pvg_fl_model *m;
    assert_int_equal(pvg_fl_model_new(&c, all.n_items, rng, &m, NULL), PVG_OK);
    /* the reference starts from the same item factors */
    const float *V;
    uint32_t ni, k;
    assert_int_equal(pvg_fl_model_item_factors(m, &V, &ni, &k, NULL), PVG_OK);
    double *Vr = malloc(ni * k * sizeof *Vr), *Ur = malloc(all.n_users * k * sizeof *Ur);
    for (size_t i = 0; i < (size_t)ni * k; i++)
        Vr[i] = V[i];
    for (int it = 0; it < 15; it++) {
        als_half(M, all.n_users, ni, 0, Vr, Ur, k, c.reg, c.alpha0);
        als_half(M, ni, all.n_users, 1, Ur, Vr, k, c.reg, c.alpha0);
    }
    float *Vrf = malloc(ni * k * sizeof *Vrf);
    for (size_t i = 0; i < (size_t)ni * k; i++)
        Vrf[i] = (float)Vr[i];
    als_half(M, all.n_users, ni, 0, Vr, Ur, k, c.reg, c.alpha0);
    double r_ref = recall_of(&tr, &te, Vrf, k, NULL, Ur);
    fl_clients cl = {tr.n_users, tr.n_items, tr.indptr, tr.items, NULL};
    double r0 = recall_of(&tr, &te, V, k, m, NULL);
    for (int r = 0; r < 15; r++)
        assert_int_equal(fl_sim_round(m, &cl, 1.0, rng, NULL, NULL), PVG_OK);
    assert_int_equal(pvg_fl_model_round(m), 15);
    assert_int_equal(pvg_fl_model_item_factors(m, &V, &ni, &k, NULL), PVG_OK);
    double r_fl = recall_of(&tr, &te, V, k, m, NULL);
    /* factors are defined up to a rotation; the scores are not: they stay
     * close to centralised iALS's (the loss is non-convex, so the two
     * paths from the same start need not meet exactly) */
    float *xf = malloc(k * sizeof *xf);
    double ds = 0, ns = 0;
    for (size_t u = 0; u < tr.n_users; u++) {
        uint64_t b0 = tr.indptr[u];
        assert_int_equal(
            fl_model_user_factor(m, tr.items + b0, NULL, tr.indptr[u + 1] - b0, xf, NULL), PVG_OK);
        for (size_t j = 0; j < ni; j++) {
            double sf = 0, sr = 0;
            for (size_t q = 0; q < k; q++) {
                sf += (double)xf[q] * V[j * k + q];
                sr += Ur[u * k + q] * Vr[j * k + q];
            }
            ds += (sf - sr) * (sf - sr);
            ns += sr * sr;
        }
    }
    free(xf);
    print_message("synthetic: recall@10 start %.4f, federated %.4f, centralised %.4f, "
                  "relative score distance %.4f\n",
                  r0, r_fl, r_ref, sqrt(ds / ns));
    assert_true(r_ref > r0 + 0.05);
    assert_true(r_fl >= 0.95 * r_ref);
    assert_true(sqrt(ds / ns) < 0.2);
    /* on-device recommendations: the model's top item for a user, own
     * items excluded, sorted */
    uint8_t *bc;
    size_t bl;
    assert_int_equal(pvg_fl_model_broadcast(m, &bc, &bl, NULL), PVG_OK);
    uint32_t out[10];
    float sc[10];
    size_t n_out;
    uint64_t u0 = tr.indptr[0], u1 = tr.indptr[1];
    assert_int_equal(
        pvg_fl_client_recommend(bc, bl, tr.items + u0, NULL, u1 - u0, 10, out, sc, &n_out, NULL),
        PVG_OK);
    assert_int_equal(n_out, 10);
    for (size_t i = 0; i < n_out; i++) {
        for (uint64_t j = u0; j < u1; j++)
            assert_int_not_equal(out[i], tr.items[j]);
        if (i) assert_true(sc[i] <= sc[i - 1]);
    }
    free(bc);
    free(M);
    free(Vr);
    free(Ur);
    free(Vrf);
    pvg_fl_model_free(m);
    pvg_rng_free(rng);
    toy_free(&all);
    toy_free(&tr);
    toy_free(&te);
}

/* One round through the secure-aggregation simulator: the unmasked sum
 * equals the plain sum of the survivors' encoded updates, and applying
 * it gives the same model as applying the plain sum. */
static void test_round_through_secagg(void **state)
{
    (void)state;
    pvg_fl_config c = small_cfg();
    toy t;
    toy_new(&t, 8, 20, 5, 8);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(4);
    pvg_fl_model *m1, *m2;
    assert_int_equal(pvg_fl_model_new(&c, t.n_items, rng, &m1, NULL), PVG_OK);
    pvg_rng_free(rng);
    rng = pvg_rng_new_INSECURE_deterministic_for_tests(4);
    assert_int_equal(pvg_fl_model_new(&c, t.n_items, rng, &m2, NULL), PVG_OK);
    size_t d = pvg_fl_update_dim(&c, t.n_items);
    uint8_t *bc;
    size_t bl;
    assert_int_equal(pvg_fl_model_broadcast(m1, &bc, &bl, NULL), PVG_OK);
    uint32_t *in = calloc(t.n_users * d, sizeof *in);
    for (size_t u = 0; u < t.n_users; u++) {
        uint64_t b = t.indptr[u];
        assert_int_equal(pvg_fl_client_update_ex(bc, bl, t.items + b, NULL, t.indptr[u + 1] - b,
                                                 rng, 1, in + u * d, d, NULL, NULL),
                         PVG_OK);
    }
    pvg_secagg_sim_options o;
    memset(&o, 0, sizeof o);
    o.params.n = (uint32_t)t.n_users;
    o.params.k = (uint32_t)t.n_users - 1;
    o.params.t = 4;
    o.params.d = (uint32_t)d;
    o.params.bits = 32;
    o.dropout = 0.25;
    o.inputs = in;
    o.rng = rng;
    o.server_threads = 1;
    o.allow_insecure_rng = 1;
    pvg_secagg_sim_result r;
    pvg_error err;
    assert_int_equal(pvg_secagg_simulate(&o, &r, &err), PVG_OK);
    assert_true(r.n_survivors >= 4 && r.n_survivors < t.n_users);
    uint32_t *plain = calloc(d, sizeof *plain), *got = calloc(d, sizeof *got);
    for (size_t s = 0; s < r.n_survivors; s++)
        for (size_t i = 0; i < d; i++)
            plain[i] += in[(size_t)r.survivors[s] * d + i];
    for (size_t i = 0; i < d; i++) {
        got[i] = (uint32_t)r.sum[i];
        assert_int_equal(got[i], plain[i]);
    }
    assert_int_equal(pvg_fl_model_apply(m1, got, d, (uint32_t)r.n_survivors, NULL, NULL), PVG_OK);
    assert_int_equal(pvg_fl_model_apply(m2, plain, d, (uint32_t)r.n_survivors, NULL, NULL), PVG_OK);
    const float *v1, *v2;
    uint32_t n1, k1;
    assert_int_equal(pvg_fl_model_item_factors(m1, &v1, &n1, &k1, NULL), PVG_OK);
    assert_int_equal(pvg_fl_model_item_factors(m2, &v2, &n1, &k1, NULL), PVG_OK);
    assert_memory_equal(v1, v2, (size_t)n1 * k1 * sizeof *v1);
    assert_int_equal(pvg_fl_model_round(m1), 1);
    /* a wrong dimension or no survivors are refused */
    assert_int_equal(pvg_fl_model_apply(m1, got, d - 1, 3, NULL, NULL), PVG_ERR_INVALID);
    assert_int_equal(pvg_fl_model_apply(m1, got, d, 0, NULL, NULL), PVG_ERR_INVALID);
    pvg_secagg_sim_result_clear(&r);
    free(plain);
    free(got);
    free(in);
    free(bc);
    pvg_fl_model_free(m1);
    pvg_fl_model_free(m2);
    pvg_rng_free(rng);
    toy_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_decode_roundtrip),
        cmocka_unit_test(test_sparse_encoding_matches_dense_reference),
        cmocka_unit_test(test_sum_of_encoded_updates),
        cmocka_unit_test(test_config_for_cohort),
        cmocka_unit_test(test_clipping_bounds_one_client),
        cmocka_unit_test(test_ddg_noise_variance),
        cmocka_unit_test(test_client_refuses_insecure_rng_for_ddg),
        cmocka_unit_test(test_broadcast_parser),
        cmocka_unit_test(test_accountant),
        cmocka_unit_test(test_synthetic_run_approaches_centralised),
        cmocka_unit_test(test_round_through_secagg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
