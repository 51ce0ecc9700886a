/*
 * fuzz_fl_state.c - libFuzzer harness for the federated-training STATE
 * parser (src/fl/fl_client.c, docs/fl-protocol.md) and the client's rules
 * behind it: the input is a STATE as a client receives it from a server
 * that may lie. An accepted STATE must keep its promises (survivors
 * ascending and below n, the reply inside the input, the length exact);
 * a STATE of a round then goes to a fresh peer (the threshold and bits
 * rules) and one step of it (the advertisement, or nothing due). Every
 * refusal must carry an error message; nothing may crash or read out of
 * bounds. Seeds: fuzz/corpus/fl_state/ (an idle STATE and one of round 1's
 * advertise phase with n = 3, k = 2, t = 2, d = 4).
 */
#include "fuzz_common.h"

#include <privguide/fl_net.h>
#include <privguide/rng.h>
#include <privguide/store.h>

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pvg_fl_state st;
    pvg_error err;
    pvg_status s = pvg_fl_state_parse(data, size, &st, &err);
    fuzz_check_error(s, &err);
    if (s != PVG_OK) return 0;
    /* what an accepted STATE promises */
    if (size != PVG_FL_NET_STATE_MIN + 4 * (size_t)st.n_survivors + st.reply_len) abort();
    if (st.n_survivors && st.phase != PVG_FL_PHASE_UNMASK) abort();
    for (uint32_t i = 0; i < st.n_survivors; i++) {
        uint32_t v = rd32(st.survivors + 4 * (size_t)i);
        if (v >= st.params.n) abort();
        if (i && v <= rd32(st.survivors + 4 * (size_t)(i - 1))) abort();
    }
    if (st.reply && (st.reply < data || st.reply + st.reply_len != data + size)) abort();
    int in_round = st.phase >= PVG_FL_PHASE_ADVERTISE && st.phase <= PVG_FL_PHASE_UNMASK;
    if (!in_round && st.id != PVG_FL_NET_NO_ID) abort();
    if (in_round && st.id != PVG_FL_NET_NO_ID && st.id >= st.params.n) abort();
    /* a peer for this round: the client's own rules, then one step */
    if (!in_round || st.id == PVG_FL_NET_NO_ID || st.params.d > 4096 || st.params.n > 64) return 0;
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(7);
    if (!rng) return 0;
    pvg_fl_peer *p = NULL;
    s = pvg_fl_peer_new(&st, NULL, st.params.d, rng, 1, &p, &err);
    fuzz_check_error(s, &err);
    if (s == PVG_OK) {
        /* a majority threshold is what the peer accepted */
        if (2ull * st.params.t <= (unsigned long long)st.params.k + 1) abort();
        uint8_t *msg = NULL;
        size_t len = 0;
        s = pvg_fl_peer_step(p, &st, &msg, &len, &err);
        fuzz_check_error(s, &err);
        /* only the advertisement can be due to a new peer */
        if (msg && st.phase != PVG_FL_PHASE_ADVERTISE) abort();
        if (s == PVG_OK && st.phase == PVG_FL_PHASE_ADVERTISE && !st.submitted && !msg) abort();
        pvg_free(msg);
        pvg_fl_peer_free(p);
    }
    pvg_rng_free(rng);
    return 0;
}
