/*
 * fl_client_core.h - the federated client without a transport: it is fed
 * the server's answers (STATE bodies and the broadcast) as bytes and hands
 * back what to do next (wait, fetch the broadcast, post a message, stop)
 * with the message's bytes. It makes every decision of a client; its two
 * transports only make the requests of docs/fl-protocol.md: libcurl natively
 * (pvg_fl_client_run_core below, under pvg_fl_client_run and `privguide fl
 * client`) and JavaScript in a browser (the same C compiled to WebAssembly,
 * wasm/). It applies the client's rules of that page (the majority
 * threshold and the unmask checks through pvg_fl_peer, the DP policy on the
 * broadcast, the survivor floor, the catalogue bounds) and keeps the
 * shopper's events, user factor and unmasked vector in its own memory: only
 * the SecAgg messages leave it.
 */
#ifndef PVG_FL_CLIENT_CORE_H
#define PVG_FL_CLIENT_CORE_H

#include <privguide/fl.h>
#include <privguide/fl_net.h>

#include <stddef.h>
#include <stdint.h>

/* What the client accepts of a server (its own settings, never the server's;
 * the flags of `privguide fl client`). */
typedef struct pvg_fl_core_policy {
    int allow_no_dp;          /* take part in rounds without DP noise */
    double max_epsilon;       /* refuse noise whose epsilon over the rounds exceeds this (> 0) */
    double delta, q;          /* the delta and sampling rate the client assumes */
    uint32_t rounds;          /* rounds assumed (at least the broadcast's round number) */
    uint32_t catalogue_items; /* the items the client knows the server lists; > 0: a
                                 session whose update is longer than that catalogue can need
                                 (256 factors) is refused before anything is allocated, and a
                                 broadcast announced beyond its largest before it is fetched
                                 (as `fl client` does); 0: only the protocol's own limits */
} pvg_fl_core_policy;

/* The peer's own input buffer (d words, zeroed here), for an update to be
 * written straight into it rather than copied (fl_client.c); mark it set
 * with fl_peer_input_set, or wipe it (fl_peer_input_wipe) on failure. NULL
 * when the masked input was made already. */
uint32_t *fl_peer_input_buffer(pvg_fl_peer *p, size_t *d);
void fl_peer_input_set(pvg_fl_peer *p);
void fl_peer_input_wipe(pvg_fl_peer *p);
/* Between its SHARES and the FORWARD: adds up the peer's masks ahead of its
 * input (pvg_secagg_client_premask). 1 when they are ready (made now or
 * before), 0 when not due or not made (the masked input then makes them). */
int fl_peer_premask(pvg_fl_peer *p);

typedef enum pvg_fl_core_action {
    PVG_FL_CORE_WAIT = 0,      /* ask GET /v1/fl/state again after wait_ms, or long-poll
                                  (pvg_fl_core_wait_query) */
    PVG_FL_CORE_BROADCAST = 1, /* GET /v1/fl/broadcast?round=R, then pvg_fl_core_broadcast */
    PVG_FL_CORE_SEND = 2,      /* POST the message to /v1/fl/messages, then ask the state at once */
    PVG_FL_CORE_FINISHED = 3   /* the rounds asked for are done, or the server finished */
} pvg_fl_core_action;

typedef struct pvg_fl_core pvg_fl_core;

/* A client over the shopper's history (item indices into the server's item
 * list, weights may be NULL; both copied), taking part in `rounds` rounds (0:
 * until the server finishes). rng borrowed (must outlive the core; secure
 * unless allow_insecure_rng). keep_update non-zero keeps a copy of each
 * update vector for pvg_fl_core_last_update (tests of the aggregate only).
 * The new core is freed with pvg_fl_core_free. */
pvg_status pvg_fl_core_new(const uint32_t *items, const float *weights, size_t n,
                           const pvg_fl_core_policy *pol, uint32_t rounds, pvg_rng *rng,
                           int allow_insecure_rng, int keep_update, pvg_fl_core **out,
                           pvg_error *err) PVG_WARN_UNUSED;
void pvg_fl_core_free(pvg_fl_core *c);

/* A client whose vector is computed by update(ctx, ...) from each broadcast
 * (pvg_fl_client_run's generic vector: no history, no DP policy of its own;
 * the callback returns PVG_ERR_POLICY to refuse a round, any other error
 * stops the client). The survivor floor still applies when the broadcast is
 * a federated-iALS one with distributed noise. max_d > 0: a session of a
 * longer vector is refused before anything is allocated; max_broadcast > 0:
 * a larger announced broadcast is an error before the fetch (0: only the
 * protocol's limits). rng borrowed. Freed with pvg_fl_core_free. */
pvg_status pvg_fl_core_new_fn(pvg_fl_update_fn update, void *ctx, uint32_t rounds, uint32_t max_d,
                              size_t max_broadcast, pvg_rng *rng, int allow_insecure_rng,
                              pvg_fl_core **out, pvg_error *err) PVG_WARN_UNUSED;

/* Simulations: the client stops (PVG_FL_CORE_FINISHED) on reaching phase
 * `phase` (1..4) of the first round it is sampled for, as a client that
 * dropped; 0 (or out of range): never. */
void pvg_fl_core_set_drop_phase(pvg_fl_core *c, int phase);

/* After PVG_FL_CORE_BROADCAST: the broadcast's length the STATE announced
 * (already checked against the client's bound); a transport reads no more
 * than this. 0 when no broadcast is due. */
size_t pvg_fl_core_broadcast_len(const pvg_fl_core *c);

/* Feeds the body of an answer to POST /v1/fl/join or GET /v1/fl/state.
 * *action says what to do; *wait_ms how long to wait (WAIT); *round the
 * broadcast's round (BROADCAST); *msg / *msg_len the message to post (SEND;
 * borrowed from the core until the next call). A malformed STATE is an error
 * (PVG_ERR_INVALID with its byte offset); a round the client refuses is not
 * (it is counted in pvg_fl_core_stats' refused, and the client waits for the
 * next round). */
pvg_status pvg_fl_core_state(pvg_fl_core *c, const uint8_t *state, size_t len, int *action,
                             uint32_t *wait_ms, uint64_t *round, const uint8_t **msg,
                             size_t *msg_len, pvg_error *err) PVG_WARN_UNUSED;

/* Feeds the broadcast of `round` (bc NULL: the server answered 404, the round
 * moved on). Checks it against the STATE's announced length and the DP
 * policy, then computes the update (the user factor is wiped after it). */
pvg_status pvg_fl_core_broadcast(pvg_fl_core *c, uint64_t round, const uint8_t *bc, size_t len,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* On device: the top k items (own items excluded) from the last broadcast
 * the client received and its own history; nothing goes to the server. */
pvg_status pvg_fl_core_recommend(const pvg_fl_core *c, size_t k, uint32_t *items, float *scores,
                                 size_t *n_out, pvg_error *err) PVG_WARN_UNUSED;

/* Rounds completed with the sum applied, rounds refused; the reason of the
 * last refusal ("" if none; borrowed). */
void pvg_fl_core_stats(const pvg_fl_core *c, uint32_t *rounds, uint32_t *refused,
                       const char **last_refusal);

/* Work the core can do ahead while its transport waits for the next STATE
 * (call it before a long poll or a nap; optional: a transport that never
 * calls it sends the same messages): between its SHARES and the FORWARD,
 * the round's masks, which do not depend on the update. Returns 1 when it
 * did work now, 0 when none was due. */
int pvg_fl_core_idle(pvg_fl_core *c);

/* The last STATE fed to pvg_fl_core_state: its round, phase and whether it
 * answered a long poll (flag "waited": the server honours ?wait=). Returns 0
 * (and zeros) before any STATE was fed. Any pointer may be NULL. */
int pvg_fl_core_seen(const pvg_fl_core *c, uint64_t *round, int *phase, int *waited);

/* After PVG_FL_CORE_WAIT, a transport may long-poll instead of sleeping
 * wait_ms: GET /v1/fl/state?<query>, the query ("wait=1.R.P.MS", the
 * round and phase of the last STATE fed, docs/fl-protocol.md) written to
 * buf (NUL-terminated). The server answers when its round or phase differs
 * from those, or after at most ms (it bounds the wait: 30 s, the phase
 * grace in a round). An answer without the "waited" flag
 * (pvg_fl_core_seen) comes from a server that does not long-poll: sleep
 * wait_ms then. Returns the query's length, 0 when no STATE was fed yet or
 * buf is too small (then "" in buf when len > 0). */
size_t pvg_fl_core_wait_query(const pvg_fl_core *c, uint32_t wait_ms, char *buf, size_t len);

/* keep_update only: the last update vector (d words, borrowed), else NULL. */
const uint32_t *pvg_fl_core_last_update(const pvg_fl_core *c, size_t *d);

#ifndef PVG_FL_CLIENT_NO_HTTP
/* The native transport: joins o->server with o->token and makes the
 * requests `core` (borrowed) asks for over libcurl until it says FINISHED,
 * o->timeout_s passed or a request failed. Of o it reads only server,
 * token, timeout_s and wire_tap (the client's choices are the core's).
 * st (may be NULL) gets the transport's figures and the core's rounds and
 * refusals. It joins again once when the server forgot the client (404),
 * waits on 429/503, and reads no answer beyond the largest legal one
 * (fl_net.h, pvg_fl_client_run). Errors as pvg_fl_client_run. */
pvg_status pvg_fl_client_run_core(const pvg_fl_client_options *o, pvg_fl_core *core,
                                  pvg_fl_client_stats *st, pvg_error *err) PVG_WARN_UNUSED;
#endif

#endif
