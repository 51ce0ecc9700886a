/*
 * fl_wasm.c (WebAssembly build only) - the exports of the browser client:
 * a handle over pvg_fl_core (src/fl/fl_client_core.h) with plain integer
 * arguments, so that wasm/fl_client.js can pass bytes through the module's
 * memory. Every function returns a negative number on error; pvgw_error
 * gives the text of the last one.
 */
#include "fl/fl_client_core.h"

#include <privguide/rng.h>

#include <emscripten.h>
#include <stdlib.h>
#include <string.h>

typedef struct pvgw {
    pvg_fl_core *core;
    pvg_rng *rng;
    uint32_t wait_ms;
    double round;
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
