/*
 * fuzz_fl_core.c - libFuzzer harness for the transport-free federated client
 * (src/fl/fl_client_core.c, the core the browser's WebAssembly client runs):
 * the input is a conversation with a server that may lie, as a sequence of
 * records [kind u8][length u16 LE][bytes]: kind even feeds the bytes as an
 * answer of /v1/fl/join or /v1/fl/state, kind odd as the broadcast of the
 * round the core last asked for (kind 3: a 404 instead). The core knows its
 * catalogue (24 items), so no session may make it allocate more than that
 * catalogue can need. Every error must carry a message; a SEND must come
 * with a message; nothing may crash, leak or read out of bounds.
 * Seeds: fuzz/corpus/fl_core/ (fuzz_fl_state's STATE seeds as one record).
 */
#include "fuzz_common.h"

#include "fl/fl_client_core.h"

#include <privguide/fl_net.h>
#include <privguide/rng.h>

#define N_ITEMS 24

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t hist[] = {1, 5, 7, 20};
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(11);
    if (!rng) return 0;
    pvg_fl_core_policy pol = {1, 10, 1e-5, 1, 0, N_ITEMS};
    pvg_fl_core *c = NULL;
    pvg_error err;
    if (pvg_fl_core_new(hist, NULL, 4, &pol, 0, rng, 1, 1, &c, &err) != PVG_OK) abort();
    uint64_t bround = 0;
    int want_bc = 0;
    size_t o = 0;
    for (int steps = 0; steps < 24 && o + 3 <= size; steps++) {
        uint8_t kind = data[o];
        size_t len = (size_t)data[o + 1] | (size_t)data[o + 2] << 8;
        o += 3;
        if (len > size - o) len = size - o;
        const uint8_t *b = data + o;
        o += len;
        pvg_status s;
        if (kind % 2 == 0) {
            int action = -1;
            uint32_t wait = 0;
            uint64_t round = 0;
            const uint8_t *msg = NULL;
            size_t ml = 0;
            s = pvg_fl_core_state(c, b, len, &action, &wait, &round, &msg, &ml, &err);
            fuzz_check_error(s, &err);
            if (s != PVG_OK) continue;
            if (action < PVG_FL_CORE_WAIT || action > PVG_FL_CORE_FINISHED) abort();
            if (action == PVG_FL_CORE_SEND && (!msg || !ml)) abort();
            if (action != PVG_FL_CORE_SEND && msg) abort();
            want_bc = action == PVG_FL_CORE_BROADCAST;
            if (want_bc) bround = round;
        } else {
            if (!want_bc) continue;
            s = pvg_fl_core_broadcast(c, bround, kind == 3 ? NULL : b, kind == 3 ? 0 : len, &err);
            fuzz_check_error(s, &err);
            want_bc = 0;
            size_t d = 0;
            const uint32_t *u = pvg_fl_core_last_update(c, &d);
            if (u) { /* an update is never longer than the catalogue can need */
                volatile uint32_t x = u[d ? d - 1 : 0];
                (void)x;
            }
            uint32_t top[8];
            float sc[8];
            size_t nt = 0;
            s = pvg_fl_core_recommend(c, 8, top, sc, &nt, &err);
            fuzz_check_error(s, &err);
            if (s == PVG_OK) {
                if (nt > 8) abort();
                for (size_t i = 0; i < nt; i++)
                    if (top[i] >= N_ITEMS) abort();
            }
        }
    }
    uint32_t rounds = 0, refused = 0;
    const char *why = NULL;
    pvg_fl_core_stats(c, &rounds, &refused, &why);
    if (!why) abort();
    pvg_fl_core_free(c);
    pvg_rng_free(rng);
    return 0;
}
