/*
 * privguide/fl_net.h - federated training as a client-server system: the
 * server-side round coordinator (registered clients, a Poisson-sampled
 * cohort per round, one SecAgg+ session per round with deadlines per
 * phase) and the client (a state machine fed with the server's STATE
 * messages, and a libcurl loop that drives it over HTTP).
 *
 * The coordinator moves any client vector of d uint32 words through
 * secure aggregation (secagg.h) and hands only the unmasked SUM of the
 * surviving clients to a callback; it never holds one client's unmasked
 * vector. What the vector means (a federated-training update, fl.h) is the
 * callbacks' business. Wire messages and phases: docs/fl-protocol.md.
 *
 * Thread-safety: a coordinator is shared by the HTTP workers (every
 * function takes its lock) and runs its own thread for the deadlines. A
 * peer or client run is one thread's.
 */
#ifndef PRIVGUIDE_FL_NET_H
#define PRIVGUIDE_FL_NET_H

#include <privguide/common.h>
#include <privguide/fl.h>
#include <privguide/rng.h>
#include <privguide/secagg.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

#define PVG_FL_NET_VERSION 1
#define PVG_FL_NET_NO_ID 0xFFFFFFFFu
#define PVG_FL_NET_KEY_BYTES 32 /* a client's identity on the coordinator */
/* registered clients, at most (pvg_fl_coord_capacity: fewer at high sampling rates) */
#define PVG_FL_NET_MAX_REGISTERED 100000
#define PVG_FL_NET_STATE_MIN 80 /* bytes of a STATE message without its tail */
/* A long poll (pvg_fl_coord_park) waits at most this long; a client may ask less. */
#define PVG_FL_NET_MAX_WAIT_MS 30000
/* Parked long polls a coordinator holds by default (pvg_fl_coord_options.max_waits): half
   the HTTP server's 4,096 connections, so parked polls never take them all. */
#define PVG_FL_NET_MAX_WAITS 2048

/* Phases of a round (the STATE message's phase byte). */
typedef enum pvg_fl_phase {
    PVG_FL_PHASE_IDLE = 0,      /* no round under way: waiting for clients */
    PVG_FL_PHASE_ADVERTISE = 1, /* SecAgg round 0 */
    PVG_FL_PHASE_SHARE = 2,     /* SecAgg round 1 */
    PVG_FL_PHASE_MASKED = 3,    /* SecAgg round 2 */
    PVG_FL_PHASE_UNMASK = 4,    /* SecAgg round 3 */
    PVG_FL_PHASE_DONE = 5,      /* the round's sum was applied */
    PVG_FL_PHASE_ABORTED = 6,   /* the round aborted: nothing was revealed */
    PVG_FL_PHASE_FINISHED = 7   /* the coordinator ran its last round */
} pvg_fl_phase;

/* Static name of a phase ("advertise", ...). */
const char *pvg_fl_phase_name(int phase);

/* The broadcast of round `round` (1-based): new bytes in *out (free()).
 * Called by the coordinator thread when a round starts. */
typedef pvg_status (*pvg_fl_broadcast_fn)(void *ctx, uint64_t round, uint8_t **out, size_t *out_len,
                                          pvg_error *err);
/* The unmasked sum of `survivors` clients' vectors (d words mod 2^32,
 * borrowed for the call) of round `round`. */
typedef pvg_status (*pvg_fl_apply_fn)(void *ctx, uint64_t round, const uint32_t *sum, size_t d,
                                      uint32_t survivors, pvg_error *err);

typedef struct pvg_fl_coord_options {
    uint32_t d;                    /* words per client vector, 1..PVG_SECAGG_MAX_DIM */
    double sample_rate;            /* Poisson sampling rate q of each registered client, (0, 1] */
    uint32_t min_clients;          /* a round starts once this many are registered (>= 3; 0: 3) */
    uint32_t min_cohort;           /* a sampled cohort smaller than this is resampled at the next
                                      start (>= 3; 0: 3) */
    uint32_t k;                    /* SecAgg+ neighbours. 0: k and t from pvg_secagg_plan_params
                                      for each cohort (30% dropout, 5% corrupt, sigma 40, eta 20).
                                      Else a cohort of n <= k + 1 uses the complete graph
                                      (k = n - 1), a larger one k rounded down to even, with t a
                                      strict majority of k + 1 */
    double phase_seconds[4];       /* deadlines of advertise, share, masked input, unmask from the
                                      phase's start; 0: 30 s each */
    double start_delay;            /* seconds between rounds (and after min_clients is reached) */
    uint32_t max_rounds;           /* stop after this many rounds (done or aborted); 0: unlimited */
    unsigned server_threads;       /* SecAgg unmasking threads, 1..64 (0: 1) */
    pvg_fl_broadcast_fn broadcast; /* NULL: an empty broadcast */
    pvg_fl_apply_fn apply;         /* NULL: the sum is wiped unused */
    void *ctx;                     /* passed to both */
    pvg_rng *rng; /* borrowed for the coordinator's life: sampling and session ids; the
                     secure generator unless allow_insecure_rng */
    int allow_insecure_rng;
    uint32_t min_survivors; /* the survivor floor n_min: a round whose masked inputs come from
                               fewer clients aborts before unmasking (nothing is revealed), and a
                               cohort smaller than it is resampled; 0: no floor beyond SecAgg's
                               threshold. With distributed DP noise each client adds
                               sigma^2 / n_min, so every revealed sum carries >= sigma^2. */
    double phase_grace;     /* > 0: a phase also closes when at least max(t, min_survivors)
                               messages are in, none arrived and every client still expected in
                               it has been silent (no poll, no message) for this many seconds: a
                               client that stopped mid-round no longer holds every phase to its
                               deadline, and one that is alive polls (retry_ms <= 1 s). A client
                               computing for longer than the grace is counted as dropped. 0: only
                               when all expected messages are in, or at the deadline */
    double expire_seconds;  /* a registered client not seen (join, state, message) for this long
                               is dropped from the registry between rounds; it may join again.
                               0: 600 s */
    double (*clock)(void *clock_ctx); /* tests: the coordinator's clock in seconds (deadlines,
                                         expiry); NULL: CLOCK_MONOTONIC */
    void *clock_ctx;
    uint32_t max_waits;   /* long polls parked at once (pvg_fl_coord_park), at most; one more is
                             refused with PVG_ERR_BUSY. 0: PVG_FL_NET_MAX_WAITS */
    unsigned lane_bits;   /* SecAgg word width: 0 or 32, or 16 (half the masks' keystream and
                             the masked upload) for updates encoded mod 2^16 (pvg_fl_config
                             bits = 16: a client refuses a word >= 2^16). The apply callback
                             gets uint32 words either way, each the sum mod 2^lane_bits. Sent
                             in the STATE (byte 18); clients before 16-bit lanes refuse it */
    unsigned mask_rounds; /* the masks' PRG: ChaCha with 0 or 8 (ChaCha8, the default), 12 or
                             20 (ChaCha20) rounds; sent in the STATE (byte 19); clients before
                             it refuse 12 and 8 */
    uint32_t max_cohort;  /* the most clients whose inputs one round sums: the cohort the
                             update's encoding leaves room for without wrapping mod 2^lane_bits
                             (pvg_fl_config expected_cohort of the wrap bound). The registry
                             then takes at most the N with N q + 10 sqrt(N q (1 - q)) <=
                             max_cohort, and a larger sampled cohort aborts before any SecAgg
                             message. 0: SecAgg's limit PVG_SECAGG_MAX_CLIENTS; else 3..that */
    const pvg_fl_config *fl_config; /* the training config whose encoded updates the vectors
                                       are (read by pvg_fl_coord_new only; NULL: vectors of
                                       another kind, not checked). pvg_fl_coord_new then refuses
                                       a config whose bits differ from lane_bits, whose update
                                       dimension for fl_items is not d, or whose lane cannot
                                       hold the sum of the cohort limit's (max_cohort, or
                                       SecAgg's) clients' clipped, noised updates
                                       (pvg_fl_config_check_cohort, with min_survivors) */
    uint32_t fl_items;              /* the catalog size of fl_config's model */
} pvg_fl_coord_options;

/* What happened in one round (pvg_fl_coord_wait). */
typedef struct pvg_fl_round_stats {
    uint64_t round;
    int phase;             /* PVG_FL_PHASE_DONE or PVG_FL_PHASE_ABORTED */
    uint32_t registered;   /* registered clients when the round started */
    uint32_t cohort;       /* n: sampled clients */
    uint32_t k, t;         /* the session's neighbours and threshold */
    unsigned lane_bits;    /* the session's SecAgg lane: 32 or 16 */
    unsigned mask_rounds;  /* the session's mask PRG: ChaCha 8, 12 or 20 rounds */
    uint32_t arrived[4];   /* messages accepted in each phase */
    uint32_t survivors;    /* clients whose vectors are in the sum */
    double seconds;        /* from the round's start to its end */
    double server_seconds; /* CPU-bound work of the coordinator (receive, advance, apply) */
    double phase_seconds[4];
    /* per phase, seconds from its start to its max(t, survivor floor)-th accepted
       message (0: never reached) and to its last one (0: none): what the grace and
       the deadlines add is phase_seconds minus last_message_seconds */
    double quorum_seconds[4], last_message_seconds[4];
    unsigned long long bytes_in, bytes_out; /* message bytes of the round's protocol */
    char error[PVG_ERROR_TEXT_LEN];         /* why it aborted */
} pvg_fl_round_stats;

typedef struct pvg_fl_coord pvg_fl_coord;

/* new: a coordinator (copies the options; rng, callbacks and ctx are
 * borrowed) with its deadline thread running. Errors: PVG_ERR_INVALID
 * naming the option, PVG_ERR_POLICY (the deterministic generator without
 * allow_insecure_rng), NOMEM, INTERNAL (thread). */
pvg_status pvg_fl_coord_new(const pvg_fl_coord_options *o, pvg_fl_coord **out,
                            pvg_error *err) PVG_WARN_UNUSED;
/* Stops the thread, wipes and frees. NULL ok. */
void pvg_fl_coord_free(pvg_fl_coord *c);

/* Registers a client by its identity (the shopper's pseudonym, zero-padded
 * to 32 bytes); idempotent (a registered client is marked seen). Errors:
 * PVG_ERR_BUSY (registry full: pvg_fl_coord_capacity clients). */
pvg_status pvg_fl_coord_join(pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES],
                             pvg_error *err) PVG_WARN_UNUSED;

/* The STATE message for client `key` (new, free()): the round, phase,
 * session parameters, the client's id in the cohort, time left, and the
 * SecAgg reply due to it in this phase (when it has not answered yet).
 * Errors: PVG_ERR_NOT_FOUND (not registered). */
pvg_status pvg_fl_coord_state(pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES],
                              uint8_t **out, size_t *out_len, pvg_error *err) PVG_WARN_UNUSED;

/* ---- long polling ---- */

/* Called once for each parked wait, with the waiter given to
 * pvg_fl_coord_park, from whichever thread ends the wait (the
 * coordinator's, or the caller of pvg_fl_coord_park or
 * pvg_fl_coord_wake_all), never with the coordinator's lock held: the
 * callee may call pvg_fl_coord_wait_answer. After it the coordinator holds
 * no reference to waiter. */
typedef void (*pvg_fl_wake_fn)(void *waiter);

/* A long poll of client `key`, which saw round seen_round in phase
 * seen_phase: when the coordinator's (round, phase) already differs, or
 * wait_ms is 0, *parked = 0 and the caller answers at once
 * (pvg_fl_coord_wait_answer). Otherwise *parked = 1 and wake(waiter) is
 * called when the (round, phase) changes, when the wait ends or when
 * pvg_fl_coord_wake_all is called. The wait lasts at most min(wait_ms,
 * PVG_FL_NET_MAX_WAIT_MS) and, in a round with a phase grace, at most the
 * grace (real time). A parked client counts as seen for as long as it is
 * parked (the grace rule, expiry, pvg_fl_coord_wait_told): it is not silent.
 * One wait per client: a second wait of the same client ends its first (its
 * wake is called before this returns). Errors: PVG_ERR_NOT_FOUND (not
 * registered), PVG_ERR_BUSY (max_waits waits are parked), PVG_ERR_INVALID
 * (NULL wake, phase out of range). */
pvg_status pvg_fl_coord_park(pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES],
                             uint64_t seen_round, int seen_phase, uint32_t wait_ms,
                             pvg_fl_wake_fn wake, void *waiter, int *parked,
                             pvg_error *err) PVG_WARN_UNUSED;

/* The STATE answering a long poll (new, free()): pvg_fl_coord_state's, with
 * flag bit 2 ("waited": the server honoured the wait) set. Errors as
 * pvg_fl_coord_state. */
pvg_status pvg_fl_coord_wait_answer(pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES],
                                    uint8_t **out, size_t *out_len, pvg_error *err) PVG_WARN_UNUSED;

/* Ends every parked wait now (a server that stops answers its parked
 * polls): their wakes are called before this returns. */
void pvg_fl_coord_wake_all(pvg_fl_coord *c);

/* Long polls parked now. */
uint32_t pvg_fl_coord_parked(pvg_fl_coord *c);

/* Accepts one SecAgg message from client `key` for the current phase: the
 * message's sender must be that client's id in the cohort and its session
 * and type those of the phase. Errors: PVG_ERR_NOT_FOUND (not registered
 * or not in the cohort), PVG_ERR_STATE (no phase takes it now, or late),
 * PVG_ERR_PERMISSION (sender id of another client), those of
 * pvg_secagg_server_receive (INVALID with the byte offset, EXISTS replay,
 * CRYPTO). */
pvg_status pvg_fl_coord_submit(pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES],
                               const uint8_t *msg, size_t len, pvg_error *err) PVG_WARN_UNUSED;

/* A copy of round `round`'s broadcast (new, free()). Errors:
 * PVG_ERR_NOT_FOUND (not the current round). */
pvg_status pvg_fl_coord_broadcast(pvg_fl_coord *c, uint64_t round, uint8_t **out, size_t *out_len,
                                  pvg_error *err) PVG_WARN_UNUSED;

/* Round `round`'s broadcast without a copy (what the HTTP route serves to
 * every client): *data (*len bytes) is the coordinator's own, read-only, and
 * stays valid and unchanged until pvg_fl_broadcast_ref_free(*ref), also
 * after the round ends (a coordinator without a broadcast callback serves 0
 * bytes). Errors: PVG_ERR_NOT_FOUND (not the current round). */
typedef struct pvg_fl_broadcast_ref pvg_fl_broadcast_ref;
pvg_status pvg_fl_coord_broadcast_ref(pvg_fl_coord *c, uint64_t round, pvg_fl_broadcast_ref **ref,
                                      const uint8_t **data, size_t *len,
                                      pvg_error *err) PVG_WARN_UNUSED;
/* Drops one reference from pvg_fl_coord_broadcast_ref (any thread); the
 * last one frees the bytes. NULL is ignored. */
void pvg_fl_broadcast_ref_free(pvg_fl_broadcast_ref *ref);

/* Waits until round `round` has ended (done or aborted), at most
 * timeout_s seconds; fills *st. Errors: PVG_ERR_BUSY (timed out),
 * PVG_ERR_NOT_FOUND (that round is older than the last one kept). */
pvg_status pvg_fl_coord_wait(pvg_fl_coord *c, uint64_t round, double timeout_s,
                             pvg_fl_round_stats *st, pvg_error *err) PVG_WARN_UNUSED;

/* After the last round (the coordinator finished, max_rounds ran): waits
 * until no client is left that still polls without having been sent a STATE
 * of the finished phase. A client counts as still polling when it was seen
 * (join, poll, message) within the last quiet_s seconds of the
 * coordinator's clock; a client that left (it ran the rounds it wanted, or
 * dropped) turns quiet. A server stops only after this, so a waiting client
 * learns that training is over instead of finding the server gone. Waits
 * at most timeout_s seconds (real time). *told: clients sent the finished
 * state; *waiting: clients still polling untold at return (both may be
 * NULL). Errors: PVG_ERR_STATE (not finished), PVG_ERR_BUSY (timed out
 * with *waiting > 0), PVG_ERR_INVALID (negative times). */
pvg_status pvg_fl_coord_wait_told(pvg_fl_coord *c, double quiet_s, double timeout_s, uint32_t *told,
                                  uint32_t *waiting, pvg_error *err) PVG_WARN_UNUSED;

/* The largest message a client may POST (the body cap of the routes). */
size_t pvg_fl_coord_max_message(const pvg_fl_coord *c);
/* Registered clients (expired registrations dropped first, between rounds). */
uint32_t pvg_fl_coord_registered(pvg_fl_coord *c);
/* The most clients the registry takes: PVG_FL_NET_MAX_REGISTERED, or fewer
 * when the sampling rate q would let a Poisson cohort exceed L, SecAgg's wire
 * limit of PVG_SECAGG_MAX_CLIENTS or the options' max_cohort if smaller: the
 * largest N with N q + 10 sqrt(N q (1 - q)) <= L (N = L at q = 1), so a
 * cohort above L has probability below 1e-23 (if one is drawn anyway, the
 * round is recorded as aborted with that reason and the next one resamples). */
uint32_t pvg_fl_coord_capacity(const pvg_fl_coord *c);

/* ---- the STATE message (docs/fl-protocol.md) ---- */
typedef struct pvg_fl_state {
    uint64_t round;           /* 0: none started yet */
    int phase;                /* pvg_fl_phase */
    int submitted;            /* 1: this client's message of the phase was accepted */
    int applied;              /* 1 (done and finished phases): round `round` ended with its sum
                                 applied, not aborted */
    int waited;               /* 1: the answer to a long poll (GET /v1/fl/state?wait=...) by a
                                 server that honours it (flag bit 2) */
    uint32_t id;              /* the client's id in the cohort, PVG_FL_NET_NO_ID when not sampled */
    pvg_secagg_params params; /* n, k, t, d, bits, session (zero outside a round) */
    uint32_t deadline_ms;     /* time left in the phase */
    uint32_t retry_ms;        /* when to ask again */
    uint32_t broadcast_len;   /* bytes of the round's broadcast */
    uint32_t n_survivors;     /* unmask phase: |U3|, with the ids below */
    const uint8_t *survivors; /* n_survivors LE u32 ids, ascending (borrowed from the input) */
    const uint8_t *reply;     /* the SecAgg reply due (borrowed), or NULL */
    size_t reply_len;
} pvg_fl_state;

/* Parses a STATE message strictly (exact lengths, reserved bytes zero,
 * phase and parameter ranges, survivors ascending). Errors:
 * PVG_ERR_INVALID with err->offset and the field, UNSUPPORTED (version). */
pvg_status pvg_fl_state_parse(const uint8_t *in, size_t len, pvg_fl_state *st,
                              pvg_error *err) PVG_WARN_UNUSED;

/* ---- the client ---- */

/* Computes the client's vector for a round from the broadcast: fills
 * vec[0..d). Runs on the client only. */
typedef pvg_status (*pvg_fl_update_fn)(void *ctx, uint64_t round, const uint8_t *broadcast,
                                       size_t len, uint32_t *vec, size_t d, pvg_error *err);

/* One client's part in one round, transport-free: fed the server's STATE
 * messages, it answers with the SecAgg message to POST, if any. */
typedef struct pvg_fl_peer pvg_fl_peer;

/* new: a peer for the round described by st (copied: params and id), with
 * the client's vector vec[0..d) (copied into sodium_malloc memory, wiped by
 * free; vec NULL: set it later with pvg_fl_peer_set_input). Refuses (PVG_ERR_POLICY, nothing sent)
 * parameters that break the client's rules: the threshold must be a strict majority of each
 * neighbourhood, t > (k + 1) / 2, and bits 32. rng: borrowed, the secure
 * generator unless allow_insecure_rng. */
pvg_status pvg_fl_peer_new(const pvg_fl_state *st, const uint32_t *vec, size_t d, pvg_rng *rng,
                           int allow_insecure_rng, pvg_fl_peer **out,
                           pvg_error *err) PVG_WARN_UNUSED;
void pvg_fl_peer_free(pvg_fl_peer *p);
/* Sets (or replaces) the peer's vector vec[0..d) (copied) before its masked
 * input is due, so a client can advertise first and compute its update
 * while the keys are exchanged. PVG_ERR_STATE after the masked input was
 * made; PVG_ERR_INVALID when d is not the session's. */
pvg_status pvg_fl_peer_set_input(pvg_fl_peer *p, const uint32_t *vec, size_t d,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* Feeds a STATE of the peer's round. *out (new, pvg_free) is the message
 * to POST, or NULL when none is due. Refuses (PVG_ERR_ABORTED, and the
 * peer answers nothing more) an unmask request that asks for the self-mask
 * share of a client it also names dropped, or a pairwise share of one it
 * names survived, or that disagrees with the survivor list of the STATE
 * (a survivor named dropped or the reverse, a count that differs, fewer
 * than t survivors, this client not among them); PVG_ERR_STATE a STATE of
 * another round or session. */
pvg_status pvg_fl_peer_step(pvg_fl_peer *p, const pvg_fl_state *st, uint8_t **out, size_t *out_len,
                            pvg_error *err) PVG_WARN_UNUSED;
/* 1 after the unmask message was produced. */
int pvg_fl_peer_done(const pvg_fl_peer *p);

/* What a client run measured. */
typedef struct pvg_fl_client_stats {
    uint32_t rounds;                         /* rounds it took part in to the end */
    uint32_t refused;                        /* rounds it refused (client rules) */
    unsigned long long bytes_up, bytes_down; /* HTTP bytes sent and received: bodies and
                                                headers, polls included */
    unsigned long long body_up, body_down;   /* the bodies alone (protocol messages, STATEs,
                                                the broadcast) */
    unsigned long long requests;
    double compute_seconds; /* update + SecAgg work, transport excluded */
    double seconds;         /* wall time of the run */
} pvg_fl_client_stats;

typedef struct pvg_fl_client_options {
    const char *server; /* "http://host:port" */
    const char *token;  /* the shopper token (borrowed; sent as Bearer) */
    uint32_t rounds;    /* rounds to take part in, then return; 0: until FINISHED */
    double timeout_s;   /* give up after this long (0: 600) */
    int drop_phase;     /* simulations: stop answering at this phase (1..4) of the first
                           round it is sampled for, and return; 0: never */
    pvg_fl_update_fn update;
    void *ctx;
    pvg_rng *rng; /* borrowed; the secure generator unless allow_insecure_rng */
    int allow_insecure_rng;
    /* Tests: every byte the client puts on or takes off the wire (HTTP
     * headers and bodies, as libcurl passes them), out = 1 for sent. */
    void (*wire_tap)(void *tap_ctx, int out, const uint8_t *data, size_t len);
    void *tap_ctx;
    size_t max_broadcast; /* the largest broadcast accepted, in bytes; 0 (and never more than):
                             88 + 4 (d + 65536), the largest federated-iALS broadcast whose
                             update fits the session's d words */
    uint32_t max_d;       /* refuse (a refused round, nothing sent or allocated) a session whose
                             vector is longer than this many words; 0: PVG_SECAGG_MAX_DIM. A
                             client that knows its catalogue sets the update dimension at the
                             largest factors (pvg_fl_update_dim) */
    int plain_poll;       /* 1: poll at the retry_ms the server gives (the protocol before long
                             polling); 0: while it waits for the round, the client long-polls
                             (GET /v1/fl/state?wait=..., answered when the round's state
                             changes), and falls back to plain polling against a server
                             that does not honour the wait */
    int mask_ahead;       /* 1: once it has posted its SHARES, the client adds up its masks
                             before it waits for the masked phase (pvg_secagg_client_premask;
                             the same bytes are sent). Off by default: when many clients share
                             a few cores (bench_fl) the early masks take the CPU from the
                             clients still computing their updates, and the phase grace then
                             drops those (docs/fl-protocol.md, "Benchmark") */
} pvg_fl_client_options;

/* Joins the server and takes part in rounds until o->rounds were done, the
 * server FINISHED, drop_phase was reached or the timeout passed. The
 * client's decisions are those of the client core the browser client runs
 * (src/fl/fl_client_core.c, with o->update computing the vector); this
 * function is its libcurl transport. It joins
 * again when the server forgot it (an expired registration). No answer is
 * read beyond the largest legal one: a STATE of 80 + 4 x 65535 + 40 +
 * 180 x 65535 bytes (any session), an error body of 64 KiB, and the
 * broadcast the STATE announced, which must not exceed max_broadcast.
 * Errors:
 * PVG_ERR_IO (transport, with the URL), PVG_ERR_PERMISSION (the server
 * refused the token), PVG_ERR_BUSY (timed out), PVG_ERR_INVALID (a
 * malformed or oversized server message, with the offset). A round refused under the
 * client's rules is counted in st->refused, not an error. */
pvg_status pvg_fl_client_run(const pvg_fl_client_options *o, pvg_fl_client_stats *st,
                             pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
