/*
 * fl_wasm.c (WebAssembly build only) - the exports of the browser client:
 * a handle over pvg_fl_core (src/fl/fl_client_core.h) with plain integer
 * arguments, so that wasm/fl_client.js can pass bytes through the module's
 * memory. Every function returns a negative number on error; pvgw_error
 * gives the text of the last one.
 */
#include "fl/fl_client_core.h"

#include <privguide/dp.h>
#include <privguide/fl.h>
#include <privguide/rng.h>

#include <sodium.h>

#include <emscripten.h>
#include <emscripten/heap.h>
#include <emscripten/stack.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct pvgw {
    pvg_fl_core *core;
    pvg_rng *rng;
    uint32_t wait_ms;
    double round;
    char query[64]; /* pvgw_wait_query's answer */
    const uint8_t *msg;
    size_t msg_len;
    pvg_error err;
} pvgw;

static pvg_error g_err; /* errors of pvgw_new only (no handle yet); the browser's one thread */

EMSCRIPTEN_KEEPALIVE
pvgw *pvgw_new(const uint32_t *items, const float *weights, uint32_t n, int allow_no_dp,
               double max_epsilon, double delta, double q, uint32_t assumed_rounds, uint32_t rounds,
               int keep_update, uint32_t catalogue_items)
{
    pvgw *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    if (pvg_init() != PVG_OK) {
        pvg_error_set(&g_err, PVG_ERR_INTERNAL, "libsodium init failed");
        free(w);
        return NULL;
    }
    w->rng = pvg_rng_new_secure();
    if (!w->rng) {
        pvg_error_set(&g_err, PVG_ERR_NOMEM, "rng");
        free(w);
        return NULL;
    }
    pvg_fl_core_policy pol = {allow_no_dp, max_epsilon, delta, q, assumed_rounds, catalogue_items};
    if (pvg_fl_core_new(items, weights, n, &pol, rounds, w->rng, 0, keep_update, &w->core,
                        &g_err) != PVG_OK) {
        pvg_rng_free(w->rng);
        free(w);
        return NULL;
    }
    return w;
}

EMSCRIPTEN_KEEPALIVE
const char *pvgw_new_error(void)
{
    return g_err.text;
}

EMSCRIPTEN_KEEPALIVE
void pvgw_free(pvgw *w)
{
    if (!w) return;
    pvg_fl_core_free(w->core);
    pvg_rng_free(w->rng);
    free(w);
}

/* the action (pvg_fl_core_action) or -1 */
EMSCRIPTEN_KEEPALIVE
int pvgw_state(pvgw *w, const uint8_t *state, uint32_t len)
{
    int action = 0;
    uint64_t round = 0;
    if (pvg_fl_core_state(w->core, state, len, &action, &w->wait_ms, &round, &w->msg, &w->msg_len,
                          &w->err) != PVG_OK)
        return -1;
    w->round = (double)round;
    return action;
}

EMSCRIPTEN_KEEPALIVE
uint32_t pvgw_wait_ms(const pvgw *w)
{
    return w->wait_ms;
}

EMSCRIPTEN_KEEPALIVE
double pvgw_round(const pvgw *w)
{
    return w->round;
}

EMSCRIPTEN_KEEPALIVE
const uint8_t *pvgw_msg(const pvgw *w)
{
    return w->msg;
}

EMSCRIPTEN_KEEPALIVE
uint32_t pvgw_msg_len(const pvgw *w)
{
    return (uint32_t)w->msg_len;
}

/* bc NULL: the server answered 404 */
EMSCRIPTEN_KEEPALIVE
int pvgw_broadcast(pvgw *w, double round, const uint8_t *bc, uint32_t len)
{
    return pvg_fl_core_broadcast(w->core, (uint64_t)round, bc, len, &w->err) == PVG_OK ? 0 : -1;
}

/* the count written (<= k) or -1 */
EMSCRIPTEN_KEEPALIVE
int pvgw_recommend(const pvgw *w, uint32_t k, uint32_t *items, float *scores)
{
    size_t n = 0;
    pvgw *m = (pvgw *)w;
    if (pvg_fl_core_recommend(w->core, k, items, scores, &n, &m->err) != PVG_OK) return -1;
    return (int)n;
}

EMSCRIPTEN_KEEPALIVE
uint32_t pvgw_rounds(const pvgw *w)
{
    uint32_t r = 0;
    pvg_fl_core_stats(w->core, &r, NULL, NULL);
    return r;
}

EMSCRIPTEN_KEEPALIVE
uint32_t pvgw_refused(const pvgw *w)
{
    uint32_t r = 0;
    pvg_fl_core_stats(w->core, NULL, &r, NULL);
    return r;
}

EMSCRIPTEN_KEEPALIVE
const char *pvgw_last_refusal(const pvgw *w)
{
    const char *s = "";
    pvg_fl_core_stats(w->core, NULL, NULL, &s);
    return s;
}

EMSCRIPTEN_KEEPALIVE
const char *pvgw_error(const pvgw *w)
{
    return w->err.text;
}

/* keep_update only (tests of the aggregate): the last update, d words */
EMSCRIPTEN_KEEPALIVE
const uint32_t *pvgw_last_update(const pvgw *w, uint32_t *d)
{
    size_t n = 0;
    const uint32_t *v = pvg_fl_core_last_update(w->core, &n);
    *d = (uint32_t)n;
    return v;
}

/* Long polling (docs/fl-protocol.md): after a WAIT, the query of
 * GET /v1/fl/state?<query> that parks until the round or phase of the last
 * STATE fed changes, or ms pass (pvg_fl_core_wait_query); NULL (0) before
 * any STATE was fed. Borrowed until the next call. */
EMSCRIPTEN_KEEPALIVE
const char *pvgw_wait_query(pvgw *w, uint32_t ms)
{
    return pvg_fl_core_wait_query(w->core, ms, w->query, sizeof w->query) ? w->query : NULL;
}

/* 1 when the last STATE fed answered a long poll (flag bit 2, "waited"):
 * 0 for the answer to a ?wait= means the server does not long-poll */
EMSCRIPTEN_KEEPALIVE
int pvgw_waited(const pvgw *w)
{
    int waited = 0;
    (void)pvg_fl_core_seen(w->core, NULL, NULL, &waited);
    return waited;
}

/* the longest wait a server honours (PVG_FL_NET_MAX_WAIT_MS) */
EMSCRIPTEN_KEEPALIVE
uint32_t pvgw_max_wait_ms(void)
{
    return PVG_FL_NET_MAX_WAIT_MS;
}

/* The shopper's user factor for the broadcast bc (public item factors) and
 * their history (item indices, weight 1), as pvg_fl_client_update solves it
 * (the vector it also computes is wiped, never returned): for the page's
 * on-device list after the round, kept encrypted at rest by the page.
 * factor has room for 256 floats. Returns k, or -1 (pvgw_new_error). */
EMSCRIPTEN_KEEPALIVE
int pvgw_user_factor(const uint8_t *bc, uint32_t len, const uint32_t *items, uint32_t n,
                     float *factor)
{
    pvg_fl_config cfg;
    uint32_t round = 0, n_items = 0;
    if (pvg_init() != PVG_OK) {
        pvg_error_set(&g_err, PVG_ERR_INTERNAL, "libsodium init failed");
        return -1;
    }
    if (pvg_fl_broadcast_info(bc, len, &cfg, &round, &n_items, &g_err) != PVG_OK) return -1;
    size_t d = pvg_fl_update_dim(&cfg, n_items);
    uint32_t *vec = d ? sodium_malloc(d * sizeof *vec) : NULL;
    pvg_rng *rng = pvg_rng_new_secure();
    int k = -1;
    if (!vec || !rng)
        pvg_error_set(&g_err, PVG_ERR_NOMEM, "user factor: out of memory");
    else if (pvg_fl_client_update(bc, len, items, NULL, n, rng, vec, d, factor, &g_err) == PVG_OK)
        k = (int)cfg.factors;
    if (vec) {
        sodium_memzero(vec, d * sizeof *vec);
        sodium_free(vec);
    }
    pvg_rng_free(rng);
    return k;
}

/* TESTS ONLY (tests/web/fl_sampler.test.js): n draws of the discrete
 * Gaussian of variance parameter num/den (pvg_dp_discrete_gaussian, the
 * sampler of each client's noise share) from the deterministic test
 * generator seeded with seed, into out (doubles: exact below 2^53). The
 * client core never uses this generator (pvgw_new takes a secure one).
 * Returns 0, or -1 (pvgw_new_error). */
EMSCRIPTEN_KEEPALIVE
int pvgw_test_discrete_gaussian(double num, double den, double seed, uint32_t n, double *out)
{
    if (!(num >= 1 && num < 281474976710656.0 && den >= 1 && den < 16777216.0)) {
        pvg_error_set(&g_err, PVG_ERR_INVALID, "sampler: num in [1, 2^48), den in [1, 2^24)");
        return -1;
    }
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests((uint64_t)seed);
    if (!rng) {
        pvg_error_set(&g_err, PVG_ERR_NOMEM, "sampler: rng");
        return -1;
    }
    for (uint32_t i = 0; i < n; i++)
        out[i] = (double)pvg_dp_discrete_gaussian(rng, (uint64_t)num, (uint64_t)den);
    pvg_rng_free(rng);
    return 0;
}

/* Resuming a round after a reload (fl_browser.js, opts.persist / resume):
 * the page keeps a copy of the module's memory below the break, taken
 * between calls (no C frame live: the stack pointer is at its base) and
 * before each message is posted, so that no randomness drawn after it ever
 * left the page; a fresh instance of the same module reserves that much
 * (pvgw_memory_reserve) and takes the copy back, handle included. The
 * stack's region [pvgw_stack_low, pvgw_stack_high) is left out: no frame is
 * live between calls, and what earlier calls left there is not kept. */
EMSCRIPTEN_KEEPALIVE
uint32_t pvgw_memory_used(void)
{
    return (uint32_t)(uintptr_t)sbrk(0);
}

EMSCRIPTEN_KEEPALIVE
uint32_t pvgw_stack_low(void)
{
    return (uint32_t)emscripten_stack_get_end();
}

EMSCRIPTEN_KEEPALIVE
uint32_t pvgw_stack_high(void)
{
    return (uint32_t)emscripten_stack_get_base();
}

/* Grows the memory to at least bytes: 0, or -1 when it cannot. */
EMSCRIPTEN_KEEPALIVE
int pvgw_memory_reserve(uint32_t bytes)
{
    if (bytes <= emscripten_get_heap_size()) return 0;
    return emscripten_resize_heap(bytes) ? 0 : -1;
}
