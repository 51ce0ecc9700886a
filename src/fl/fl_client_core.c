/*
 * fl_client_core.c - the transport-free federated client (fl_client_core.h):
 * every decision of a client (advertise, fetch the broadcast, compute the
 * update, post each SecAgg message, refuse what the client's rules refuse,
 * stop) driven by the bytes of the server's answers. Its transports only
 * make the requests it asks for: libcurl in fl_client.c (pvg_fl_client_run,
 * `privguide fl client`) and JavaScript in a browser (wasm/).
 */
#include "fl/fl_client_core.h"
#include "crypto/secagg_internal.h"
#include "fl/fl_internal.h"

#include <privguide/rng.h>
#include <privguide/store.h>

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pvg_fl_core {
    uint32_t *items; /* the shopper's history: sodium_malloc */
    float *weights;  /* sodium_malloc, or NULL */
    size_t n;
    pvg_fl_core_policy pol;
    uint32_t max_d;       /* 0: no catalogue bound */
    size_t max_broadcast; /* 0: no catalogue bound */
    uint32_t want_rounds;
    pvg_rng *rng;
    int allow_insecure_rng;
    int keep_update;
    int drop_phase;          /* simulations: stop at this phase (1..4); 0 never */
    pvg_fl_update_fn update; /* NULL: federated iALS over the history, under pol */
    void *update_ctx;

    pvg_fl_peer *peer;
    uint64_t peer_round;
    int advertised;  /* the peer's ADVERTISE was handed out */
    int need_update; /* advertised; the broadcast and update are still to come */
    uint64_t skip_round;
    uint32_t floor_n; /* distributed DP: the least survivors the noise was split over */
    uint32_t bc_len;  /* the STATE's announced broadcast length */
    uint32_t d;
    unsigned lane; /* the round's SecAgg word width: 32 or 16 */

    uint8_t *msg; /* the last message handed out (pvg_malloc'd by SecAgg) */
    size_t msg_len;
    uint8_t *bc; /* the last broadcast (public), for recommendations */
    size_t bc_n;
    uint32_t *kept; /* keep_update: the last update */
    size_t kept_d;

    uint32_t rounds, refused;
    char last_refusal[400];

    int premasked;       /* fl_peer_premask ran for this peer */
    uint64_t seen_round; /* the last STATE fed: its round, phase and "waited" flag */
    int seen_phase, seen_waited, seen;
};

static void drop_msg(pvg_fl_core *c)
{
    if (c->msg) {
        sodium_memzero(c->msg, c->msg_len);
        pvg_free(c->msg);
    }
    c->msg = NULL;
    c->msg_len = 0;
}

static void drop_peer(pvg_fl_core *c)
{
    pvg_fl_peer_free(c->peer);
    c->peer = NULL;
    c->premasked = 0;
    c->advertised = 0;
    c->need_update = 0;
}

static void refuse(pvg_fl_core *c, uint64_t round, const char *why)
{
    c->refused++;
    c->skip_round = round;
    snprintf(c->last_refusal, sizeof c->last_refusal, "round %llu: %.320s",
             (unsigned long long)round, why);
    drop_peer(c);
}

/* The part of both constructors: a core with no history, policy or bounds yet. */
static pvg_status core_alloc(uint32_t rounds, pvg_rng *rng, int allow_insecure_rng,
                             pvg_fl_core **out, pvg_error *err)
{
    pvg_status s = pvg_rng_require_secure(rng, allow_insecure_rng, "fl core", err);
    if (s != PVG_OK) return s;
    pvg_fl_core *c = calloc(1, sizeof *c);
    if (!c) return pvg_error_set(err, PVG_ERR_NOMEM, "fl core");
    c->want_rounds = rounds;
    c->rng = rng;
    c->allow_insecure_rng = allow_insecure_rng;
    *out = c;
    return PVG_OK;
}

pvg_status pvg_fl_core_new(const uint32_t *items, const float *weights, size_t n,
                           const pvg_fl_core_policy *pol, uint32_t rounds, pvg_rng *rng,
                           int allow_insecure_rng, int keep_update, pvg_fl_core **out,
                           pvg_error *err)
{
    pvg_error_clear(err);
    if (out) *out = NULL;
    if (!out || !pol || !rng || (n && !items))
        return pvg_error_set(err, PVG_ERR_INVALID, "fl core: items, policy, rng and out needed");
    if (!(pol->max_epsilon > 0) || !(pol->delta > 0 && pol->delta < 1) ||
        !(pol->q > 0 && pol->q <= 1))
        return pvg_error_set(
            err, PVG_ERR_INVALID,
            "fl core: policy: max_epsilon > 0, 0 < delta < 1, 0 < q <= 1 expected");
    pvg_fl_core *c = NULL;
    pvg_status s = core_alloc(rounds, rng, allow_insecure_rng, &c, err);
    if (s != PVG_OK) return s;
    c->items = sodium_malloc(sizeof *c->items * (n ? n : 1));
    c->weights = weights ? sodium_malloc(sizeof *c->weights * (n ? n : 1)) : NULL;
    if (!c->items || (weights && !c->weights)) {
        pvg_fl_core_free(c);
        return pvg_error_set(err, PVG_ERR_NOMEM, "fl core: history");
    }
    if (n) memcpy(c->items, items, sizeof *c->items * n);
    if (weights && n) memcpy(c->weights, weights, sizeof *c->weights * n);
    c->n = n;
    c->pol = *pol;
    if (pol->catalogue_items) { /* the largest session this catalogue can need */
        pvg_fl_config big;
        pvg_fl_config_default(&big);
        big.factors = 256;
        size_t dm = pvg_fl_update_dim(&big, pol->catalogue_items);
        c->max_d = dm && dm < UINT32_MAX ? (uint32_t)dm : 0;
        c->max_broadcast = PVG_FL_HEADER + 4 * ((size_t)pol->catalogue_items * 256 + 65536);
    }
    c->keep_update = keep_update;
    *out = c;
    return PVG_OK;
}

pvg_status pvg_fl_core_new_fn(pvg_fl_update_fn update, void *ctx, uint32_t rounds, uint32_t max_d,
                              size_t max_broadcast, pvg_rng *rng, int allow_insecure_rng,
                              pvg_fl_core **out, pvg_error *err)
{
    pvg_error_clear(err);
    if (out) *out = NULL;
    if (!out || !update || !rng)
        return pvg_error_set(err, PVG_ERR_INVALID, "fl core: update, rng and out needed");
    pvg_status s = core_alloc(rounds, rng, allow_insecure_rng, out, err);
    if (s != PVG_OK) return s;
    (*out)->update = update;
    (*out)->update_ctx = ctx;
    (*out)->max_d = max_d;
    (*out)->max_broadcast = max_broadcast;
    return PVG_OK;
}

void pvg_fl_core_set_drop_phase(pvg_fl_core *c, int phase)
{
    c->drop_phase = phase >= PVG_FL_PHASE_ADVERTISE && phase <= PVG_FL_PHASE_UNMASK ? phase : 0;
}

size_t pvg_fl_core_broadcast_len(const pvg_fl_core *c)
{
    return c->peer && c->need_update ? c->bc_len : 0;
}

void pvg_fl_core_free(pvg_fl_core *c)
{
    if (!c) return;
    drop_peer(c);
    drop_msg(c);
    if (c->items) {
        sodium_memzero(c->items, sizeof *c->items * (c->n ? c->n : 1));
        sodium_free(c->items);
    }
    if (c->weights) {
        sodium_memzero(c->weights, sizeof *c->weights * (c->n ? c->n : 1));
        sodium_free(c->weights);
    }
    if (c->kept) {
        sodium_memzero(c->kept, sizeof *c->kept * c->kept_d);
        sodium_free(c->kept);
    }
    free(c->bc);
    free(c);
}

pvg_status pvg_fl_core_state(pvg_fl_core *c, const uint8_t *state, size_t len, int *action,
                             uint32_t *wait_ms, uint64_t *round, const uint8_t **msg,
                             size_t *msg_len, pvg_error *err)
{
    pvg_error_clear(err);
    *action = PVG_FL_CORE_WAIT;
    *wait_ms = 100;
    *round = 0;
    *msg = NULL;
    *msg_len = 0;
    drop_msg(c);
    pvg_fl_state fs;
    pvg_status s = pvg_fl_state_parse(state, len, &fs, err);
    if (s != PVG_OK) return s;
    c->seen_round = fs.round;
    c->seen_phase = fs.phase;
    c->seen_waited = fs.waited;
    c->seen = 1;
    if (c->peer && (fs.round != c->peer_round || fs.phase == PVG_FL_PHASE_DONE ||
                    fs.phase == PVG_FL_PHASE_ABORTED || fs.phase == PVG_FL_PHASE_FINISHED)) {
        if (fs.round == c->peer_round && fs.applied && pvg_fl_peer_done(c->peer)) c->rounds++;
        drop_peer(c);
        if (c->want_rounds && c->rounds >= c->want_rounds) {
            *action = PVG_FL_CORE_FINISHED;
            return PVG_OK;
        }
    }
    if (fs.phase == PVG_FL_PHASE_FINISHED) {
        *action = PVG_FL_CORE_FINISHED;
        return PVG_OK;
    }
    int in_round = fs.phase >= PVG_FL_PHASE_ADVERTISE && fs.phase <= PVG_FL_PHASE_UNMASK;
    if (!c->peer && in_round && fs.id != PVG_FL_NET_NO_ID && fs.round != c->skip_round &&
        fs.phase == PVG_FL_PHASE_ADVERTISE && !fs.submitted) {
        pvg_error e;
        if (c->drop_phase == PVG_FL_PHASE_ADVERTISE) { /* simulations: drop before advertising */
            *action = PVG_FL_CORE_FINISHED;
            return PVG_OK;
        }
        if (c->max_d && fs.params.d > c->max_d) {
            char why[128];
            snprintf(why, sizeof why,
                     "an update of d = %u words, more than the %u its catalogue can need",
                     fs.params.d, c->max_d);
            refuse(c, fs.round, why);
        } else if (pvg_fl_peer_new(&fs, NULL, fs.params.d, c->rng, c->allow_insecure_rng, &c->peer,
                                   &e) != PVG_OK) {
            refuse(c, fs.round, e.text);
        } else {
            c->peer_round = fs.round;
            c->d = fs.params.d; /* the round's shape, fixed with its peer */
            c->lane = fs.params.bits;
            c->need_update = 1; /* after the advertisement: due at the masked phase */
            c->floor_n = 0;
        }
    }
    if (c->peer && fs.round == c->peer_round && in_round && fs.params.d != c->d) {
        /* a server that changes the update's size within a round (to make the
           client allocate past its catalogue's bound before the broadcast is
           read) gets no update */
        char why[128];
        snprintf(why, sizeof why,
                 "the STATE changed the update from d = %u to %u words within the "
                 "round",
                 c->d, fs.params.d);
        refuse(c, fs.round, why);
    }
    if (c->peer && c->need_update && fs.round == c->peer_round && c->advertised) {
        /* the largest legal broadcast for the announced shape: the item factors and the
           Gramian of an update of d words (88 + 4 (n_items k + k^2), n_items k <= d, k <= 256),
           or less when the client knows its catalogue */
        size_t bmax = PVG_FL_HEADER + 4 * ((size_t)fs.params.d + 65536);
        if (c->max_broadcast && c->max_broadcast < bmax) bmax = c->max_broadcast;
        if (fs.broadcast_len > bmax)
            return pvg_error_set_at(err, PVG_ERR_INVALID, "fl STATE", 0, 0, 64,
                                    "broadcast_len %u: at most %zu bytes was expected for an "
                                    "update of d = %u words",
                                    fs.broadcast_len, bmax, fs.params.d);
        c->bc_len = fs.broadcast_len;
        *action = PVG_FL_CORE_BROADCAST;
        *round = fs.round;
        *wait_ms = 0;
        return PVG_OK;
    }
    if (c->peer && fs.round == c->peer_round && in_round) {
        if (c->drop_phase && fs.phase >= c->drop_phase) { /* simulations: drop here */
            drop_peer(c);
            *action = PVG_FL_CORE_FINISHED;
            return PVG_OK;
        }
        if (fs.phase == PVG_FL_PHASE_UNMASK && fs.reply && !pvg_fl_peer_done(c->peer) &&
            fs.n_survivors < c->floor_n) {
            char why[128];
            snprintf(why, sizeof why,
                     "%u survivors, below the %u the distributed noise was split over",
                     fs.n_survivors, c->floor_n);
            refuse(c, c->peer_round, why);
        } else {
            uint8_t *m = NULL;
            size_t ml = 0;
            pvg_error e;
            if (pvg_fl_peer_step(c->peer, &fs, &m, &ml, &e) != PVG_OK) {
                refuse(c, c->peer_round, e.text);
            } else if (m) {
                if (fs.phase == PVG_FL_PHASE_ADVERTISE) c->advertised = 1;
                c->msg = m;
                c->msg_len = ml;
                *action = PVG_FL_CORE_SEND;
                *msg = m;
                *msg_len = ml;
                *wait_ms = 0;
                return PVG_OK;
            }
        }
    }
    uint32_t wait = fs.retry_ms ? fs.retry_ms : 100;
    if (in_round && fs.deadline_ms + 5 < wait) wait = fs.deadline_ms + 5;
    *wait_ms = wait;
    return PVG_OK;
}

/* The client's DP policy on the broadcast (as `privguide fl client`). */
static pvg_status check_policy(const pvg_fl_core *c, const uint8_t *bc, size_t len,
                               pvg_fl_config *cfg, pvg_error *err)
{
    uint32_t br;
    /* the header is enough here: the update parses (and checks) the rest */
    pvg_status s = fl_broadcast_header(bc, len, cfg, &br, err);
    if (s != PVG_OK) return s;
    if (cfg->dp == PVG_FL_DP_NONE) {
        if (!c->pol.allow_no_dp)
            return pvg_error_set(err, PVG_ERR_POLICY,
                                 "fl client: the server asks for no DP noise (refused unless "
                                 "allow_no_dp, `fl client --allow-no-dp`)");
        return PVG_OK;
    }
    double eps = INFINITY;
    uint32_t r = c->pol.rounds > br ? c->pol.rounds : br;
    s = pvg_fl_epsilon(cfg, c->pol.q, r, c->pol.delta, &eps, err);
    if (s != PVG_OK || !(eps <= c->pol.max_epsilon))
        return pvg_error_set(err, PVG_ERR_POLICY,
                             "fl client: the server's noise (z=%g, expected cohort %g) gives "
                             "epsilon %g over %u rounds at q=%g, delta=%g; the limit is %g",
                             cfg->noise_multiplier, cfg->expected_cohort, eps, r, c->pol.q,
                             c->pol.delta, c->pol.max_epsilon);
    return PVG_OK;
}

/* The update of a core over a shopper's history (pvg_fl_core_new): the DP
 * policy on the broadcast (PVG_ERR_POLICY: refused), then federated iALS;
 * the user factor is wiped after it. vec: c->d words, zeroed. */
static pvg_status history_update(pvg_fl_core *c, const uint8_t *bc, size_t len, uint32_t *vec,
                                 pvg_error *err)
{
    pvg_fl_config cfg;
    pvg_status s = check_policy(c, bc, len, &cfg, err);
    if (s != PVG_OK) return s;
    uint8_t *copy = sa_big_alloc(len); /* public: for on-device recommendations */
    if (!copy) return pvg_error_set(err, PVG_ERR_NOMEM, "fl core: broadcast");
    memcpy(copy, bc, len);
    free(c->bc);
    c->bc = copy;
    c->bc_n = len;
    float *factor = sodium_malloc(sizeof(float) * 256);
    if (!factor) return pvg_error_set(err, PVG_ERR_NOMEM, "fl core: user factor");
    s = pvg_fl_client_update_ex(bc, len, c->items, c->weights, c->n, c->rng, c->allow_insecure_rng,
                                vec, c->d, factor, err);
    sodium_memzero(factor, sizeof(float) * 256);
    sodium_free(factor);
    if (s == PVG_OK && c->keep_update) {
        if (c->kept_d != c->d) {
            if (c->kept) sodium_free(c->kept);
            c->kept = sodium_malloc(sizeof *c->kept * (c->d ? c->d : 1));
            c->kept_d = c->kept ? c->d : 0;
        }
        if (c->kept) memcpy(c->kept, vec, sizeof *vec * c->d);
    }
    return s;
}

pvg_status pvg_fl_core_broadcast(pvg_fl_core *c, uint64_t round, const uint8_t *bc, size_t len,
                                 pvg_error *err)
{
    pvg_error_clear(err);
    if (!c->peer || !c->need_update || round != c->peer_round)
        return pvg_error_set(err, PVG_ERR_STATE, "fl core: no broadcast of round %llu is due",
                             (unsigned long long)round);
    c->need_update = 0;
    if (!bc) { /* 404: the round moved on meanwhile */
        c->skip_round = round;
        drop_peer(c);
        return PVG_OK;
    }
    if (len != c->bc_len)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fl client: broadcast of %zu bytes, the STATE announced %u", len,
                             c->bc_len);
    pvg_fl_config bcfg;
    pvg_error be;
    uint32_t bround;
    int is_fl = fl_broadcast_header(bc, len, &bcfg, &bround, &be) == PVG_OK; /* the update
                                                                                parses it all */
    if (is_fl && bcfg.bits > c->lane) {
        /* an update mod 2^bits cannot travel in a narrower lane: its sum would be
           wrong, so the client sends nothing */
        char why[160];
        snprintf(why, sizeof why,
                 "the broadcast encodes the update mod 2^%u, wider than the session's %u-bit "
                 "SecAgg lane",
                 bcfg.bits, c->lane);
        refuse(c, round, why);
        return PVG_OK;
    }
    /* the update is written straight into the peer's (locked, wiped) input
       buffer: no second copy of it */
    size_t pd = 0;
    uint32_t *vec = fl_peer_input_buffer(c->peer, &pd);
    if (!vec || pd != c->d)
        return pvg_error_set(err, PVG_ERR_STATE, "fl core: the peer takes no input now");
    pvg_error pe;
    pvg_error_clear(&pe);
    pvg_status s = c->update ? c->update(c->update_ctx, round, bc, len, vec, c->d, &pe)
                             : history_update(c, bc, len, vec, &pe);
    if (s == PVG_OK)
        fl_peer_input_set(c->peer);
    else
        fl_peer_input_wipe(c->peer);
    if (s == PVG_ERR_POLICY) { /* the client's rules refused the server's choices: no input */
        refuse(c, round, pe.text);
        return PVG_OK;
    }
    if (s != PVG_OK) {
        *err = pe;
        return s;
    }
    /* distributed noise is split over expected_cohort clients: never help
     * unmask a sum of fewer (it would carry less noise than announced) */
    c->floor_n =
        is_fl && bcfg.dp == PVG_FL_DP_DISTRIBUTED ? (uint32_t)ceil(bcfg.expected_cohort) : 0;
    return PVG_OK;
}

pvg_status pvg_fl_core_recommend(const pvg_fl_core *c, size_t k, uint32_t *items, float *scores,
                                 size_t *n_out, pvg_error *err)
{
    pvg_error_clear(err);
    *n_out = 0;
    if (!c->bc) return pvg_error_set(err, PVG_ERR_STATE, "fl core: no broadcast received yet");
    return pvg_fl_client_recommend(c->bc, c->bc_n, c->items, c->weights, c->n, k, items, scores,
                                   n_out, err);
}

void pvg_fl_core_stats(const pvg_fl_core *c, uint32_t *rounds, uint32_t *refused,
                       const char **last_refusal)
{
    if (rounds) *rounds = c->rounds;
    if (refused) *refused = c->refused;
    if (last_refusal) *last_refusal = c->last_refusal;
}

int pvg_fl_core_idle(pvg_fl_core *c)
{
    /* due once the SHARES were handed out (step 2) and before the masked phase */
    if (!c->peer || c->premasked || c->seen_phase != PVG_FL_PHASE_SHARE) return 0;
    if (!fl_peer_premask(c->peer)) return 0;
    c->premasked = 1;
    return 1;
}

int pvg_fl_core_seen(const pvg_fl_core *c, uint64_t *round, int *phase, int *waited)
{
    if (round) *round = c->seen ? c->seen_round : 0;
    if (phase) *phase = c->seen ? c->seen_phase : 0;
    if (waited) *waited = c->seen ? c->seen_waited : 0;
    return c->seen;
}

size_t pvg_fl_core_wait_query(const pvg_fl_core *c, uint32_t wait_ms, char *buf, size_t len)
{
    if (!c->seen || !buf || len == 0) return 0;
    int n = snprintf(buf, len, "wait=%d.%llu.%d.%u", PVG_FL_NET_VERSION,
                     (unsigned long long)c->seen_round, c->seen_phase, wait_ms);
    if (n < 0 || (size_t)n >= len) {
        buf[0] = 0;
        return 0;
    }
    return (size_t)n;
}

const uint32_t *pvg_fl_core_last_update(const pvg_fl_core *c, size_t *d)
{
    *d = c->kept ? c->kept_d : 0;
    return c->keep_update ? c->kept : NULL;
}
