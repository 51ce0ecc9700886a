/*
 * privguide/secagg.h - secure aggregation: a server learns the sum of many
 * clients' integer vectors and nothing else about any one of them, even
 * when clients drop out mid-protocol.
 *
 * The protocol is Bonawitz et al., "Practical Secure Aggregation for
 * Privacy-Preserving Machine Learning" (CCS 2017), semi-honest variant,
 * with the sparse neighbourhood of Bell et al., "Secure Single-Server
 * Aggregation with (Poly)Logarithmic Overhead" (CCS 2020, "SecAgg+"):
 * each client agrees pairwise masks with, and secret-shares its keys to,
 * only its k neighbours in a random k-regular graph (k = n - 1 gives the
 * original complete-graph protocol).
 *
 * Rounds (client -> server message, server -> client reply):
 *   0 advertise keys   client: ADVERTISE (two X25519 public keys)
 *                      server: KEYS (the public keys of its neighbours)
 *   1 share keys       client: SHARES (t-of-k Shamir shares of its mask key
 *                      and of its self-mask seed, one AEAD box per neighbour)
 *                      server: FORWARD (the boxes addressed to it)
 *   2 masked input     client: MASKED (x + PRG(b_u) + sum of +-PRG(s_uv))
 *                      server: UNMASK_REQ (which neighbours survived)
 *   3 unmasking        client: UNMASK (self-mask shares for survivors,
 *                      mask-key shares for dropped clients - never both)
 * Masks are ChaCha keystreams (20 rounds by default; 12 or 8 when the
 * session says so) from full 256-bit seeds. Arithmetic is mod 2^bits, bits =
 * 16, 32 or 64; vectors are uint16_t, uint32_t or uint64_t arrays.
 *
 * Client and server are explicit state machines that consume and produce
 * byte buffers (versioned, length-prefixed, strictly parsed; see
 * docs/secagg.md); they know nothing of the transport. Every failure is a
 * status code with a message in pvg_error; malformed, replayed,
 * out-of-round, unknown-sender and forged messages are refused without
 * changing the object's state, except where a contract says the session
 * aborts.
 *
 * Thread-safety: one object per thread; the server may use internal worker
 * threads for unmasking (pvg_secagg_server_set_threads).
 */
#ifndef PRIVGUIDE_SECAGG_H
#define PRIVGUIDE_SECAGG_H

#include <privguide/common.h>
#include <privguide/rng.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

/* Versions 1 and 2 (before the session's mode was bound into the key derivation) are refused. */
#define PVG_SECAGG_WIRE_VERSION 3       /* bits 32 or 64, ChaCha20 masks */
#define PVG_SECAGG_WIRE_VERSION_LANES 4 /* bits 16, or masks of ChaCha12 / ChaCha8 */
#define PVG_SECAGG_MAX_CLIENTS 65535
#define PVG_SECAGG_MAX_DIM (1u << 28)

/* The public parameters every party of one session shares. */
typedef struct pvg_secagg_params {
    uint32_t n;           /* clients, ids 0..n-1 (2..65535) */
    uint32_t k;           /* neighbours per client: n-1 (complete) or even, 2 <= k < n-1 */
    uint32_t t;           /* threshold: shares needed to recover a client's secrets,
                             2 <= t <= k + 1 (a client shares among itself and its
                             neighbours, as in Bonawitz et al.); the session also
                             aborts when fewer than t clients survive a round */
    uint32_t d;           /* vector length (1..2^28) */
    unsigned bits;        /* 16, 32 or 64: the words' width, all sums mod 2^bits */
    uint8_t session[16];  /* session id chosen by the server (random); binds every
                             message and key to this session */
    unsigned mask_rounds; /* the masks' PRG: ChaCha with 20 (0 = 20), 12 or 8 rounds */
} pvg_secagg_params;

/* Checks params; PVG_ERR_INVALID naming the field otherwise. */
pvg_status pvg_secagg_params_check(const pvg_secagg_params *p, pvg_error *err) PVG_WARN_UNUSED;

/* The wire version every message of a session with these (checked) params
 * carries, and the only one its parties accept (PVG_ERR_UNSUPPORTED
 * otherwise): PVG_SECAGG_WIRE_VERSION for 32- or 64-bit words with ChaCha20
 * masks, PVG_SECAGG_WIRE_VERSION_LANES for 16-bit words or reduced-round
 * masks. A party of another mode therefore never adds into the sum. */
unsigned pvg_secagg_wire_version(const pvg_secagg_params *p);

/* The neighbours of client `id` in the session's graph (a Harary graph
 * H(k, n) on a permutation of the ids derived from the session id, or the
 * complete graph), sorted ascending. out: room for p->k ids. Returns the
 * count (p->k) or a negative status. */
int pvg_secagg_neighbours(const pvg_secagg_params *p, uint32_t id, uint32_t *out) PVG_WARN_UNUSED;

/* ---- choosing k and t (docs/secagg.md, "Choosing k and t") ----
 *
 * The SecAgg+ analysis of Bell et al. (CCS 2020) for this library's graph
 * (a Harary graph on a random order of the ids): the smallest even k, and
 * with it the smallest t, such that, with at most ceil(dropout * n) clients
 * dropping and ceil(corrupt * n) colluding with the server, all chosen
 * independently of the session's graph:
 *   security (each event <= 2^-(sigma+1), so <= 2^-sigma together):
 *     - the mask graph of the honest clients that send a masked input is
 *       connected (else the server learns the sums of its parts);
 *     - no honest client has more than corrupt_max corrupt neighbours, and
 *       t is above corrupt_max (corrupt holders cannot rebuild a mask key on
 *       their own) or, with `active`, 2t - (k + 1) is above it (a server that
 *       tells some holders "u survived" and others "u dropped" still cannot
 *       collect t shares of both of u's secrets);
 *     - t > (k + 1) / 2 (the rule the clients enforce);
 *   correctness (<= 2^-eta): every client keeps at least t live holders, so
 *   the session does not abort for want of shares.
 * The bounds are union bounds over the n clients of exact hypergeometric
 * tails. k grows like log n (for fixed fractions). */
typedef struct pvg_secagg_plan_options {
    uint32_t n;     /* clients in the session, 2..65535 */
    double dropout; /* delta: fraction of the n clients that may drop, [0, 1) */
    double corrupt; /* gamma: fraction colluding with the server, [0, 1);
                       ceil(dropout n) + ceil(corrupt n) < n */
    unsigned sigma; /* security parameter in bits, 1..128 (0: 40) */
    unsigned eta;   /* correctness parameter in bits, 1..64 (0: 20) */
    int active;     /* non-zero: corrupt holders must stay below 2t - (k + 1), not only below t */
} pvg_secagg_plan_options;

typedef struct pvg_secagg_plan {
    uint32_t k, t;          /* for pvg_secagg_params */
    int met;                /* 1: every bound holds. 0: no k does (too many dropouts or
                               corrupt clients for this n): k = n - 1 (the complete graph)
                               and t = floor(n / 2) + 1, and the bounds say what holds */
    uint32_t corrupt_max;   /* every honest client has at most this many corrupt neighbours,
                               except with probability <= 2^-(sigma+1) */
    double log2_disconnect; /* log2 of the bounds (-inf: impossible): honest senders'
                               mask graph not connected; */
    double log2_corrupt;    /* some honest client's corrupt holders reach t (2t - k - 1
                               with active); */
    double log2_abort;      /* some client keeps fewer than t live holders */
} pvg_secagg_plan;

/* Computes the plan for o into *out. Errors: PVG_ERR_INVALID naming the
 * field (n out of range, a fraction outside [0, 1), dropped plus corrupt
 * clients not below n, sigma or eta out of range). */
pvg_status pvg_secagg_plan_params(const pvg_secagg_plan_options *o, pvg_secagg_plan *out,
                                  pvg_error *err) PVG_WARN_UNUSED;

/* ---- client ---- */
typedef struct pvg_secagg_client pvg_secagg_client;

/* new: a client with id `id` (< n). rng is borrowed for the lifetime of
 * the client and must be the secure generator (pvg_rng_new_secure()): a
 * deterministic one is refused with PVG_ERR_POLICY (privguide/rng.h). Secrets live in
 * sodium_malloc memory, wiped by free. Errors: PVG_ERR_INVALID, NOMEM,
 * POLICY. */
pvg_status pvg_secagg_client_new(const pvg_secagg_params *p, uint32_t id, pvg_rng *rng,
                                 pvg_secagg_client **out, pvg_error *err) PVG_WARN_UNUSED;

/* As pvg_secagg_client_new; allow_insecure_rng non-zero accepts the
 * deterministic test generator (reproducible tests, simulations and
 * benchmarks only; privguide/rng.h). */
pvg_status pvg_secagg_client_new_ex(const pvg_secagg_params *p, uint32_t id, pvg_rng *rng,
                                    int allow_insecure_rng, pvg_secagg_client **out,
                                    pvg_error *err) PVG_WARN_UNUSED;
void pvg_secagg_client_free(pvg_secagg_client *c);

/* Round 0: generates the key pairs, returns the ADVERTISE message in *out
 * (new, pvg_free). PVG_ERR_STATE when called twice. */
pvg_status pvg_secagg_client_advertise(pvg_secagg_client *c, uint8_t **out, size_t *out_len,
                                       pvg_error *err) PVG_WARN_UNUSED;

/* Round 1: consumes the server's KEYS message, returns SHARES. Errors:
 * PVG_ERR_INVALID (malformed, unknown or non-neighbour ids), PVG_ERR_CRYPTO
 * (a public key of low order), PVG_ERR_ABORTED (fewer than t neighbours
 * alive: the client cannot take part), PVG_ERR_STATE (wrong round). */
pvg_status pvg_secagg_client_share_keys(pvg_secagg_client *c, const uint8_t *in, size_t in_len,
                                        uint8_t **out, size_t *out_len,
                                        pvg_error *err) PVG_WARN_UNUSED;

/* Between rounds 1 and 2 (optional, while the client waits for FORWARD):
 * adds up the masks that do not depend on the input, the self mask and the
 * pairwise masks of every neighbour in KEYS, into a locked buffer of d
 * words (wiped when used or on free). pvg_secagg_client_masked_input then
 * adds the input to it and takes off the masks of the neighbours that are
 * missing from FORWARD: the MASKED message is the same, byte for byte.
 * Calling it again does nothing. Errors: PVG_ERR_STATE (not between SHARES
 * and FORWARD), PVG_ERR_NOMEM (the masked input then makes every mask). */
pvg_status pvg_secagg_client_premask(pvg_secagg_client *c, pvg_error *err) PVG_WARN_UNUSED;

/* Round 2: consumes FORWARD, masks input[0..d) (uint16_t[d], uint32_t[d] or
 * uint64_t[d] when bits = 16, 32 or 64; borrowed, not modified) and returns
 * MASKED. Errors
 * as above; PVG_ERR_CRYPTO when a box fails authentication. */
pvg_status pvg_secagg_client_masked_input(pvg_secagg_client *c, const uint8_t *in, size_t in_len,
                                          const void *input, uint8_t **out, size_t *out_len,
                                          pvg_error *err) PVG_WARN_UNUSED;

/* Round 3: consumes UNMASK_REQ, returns UNMASK. Refuses (PVG_ERR_INVALID /
 * PVG_ERR_ABORTED) a request that names a client both survived and dropped,
 * names itself dropped, names an id it holds no share of, or claims fewer
 * than t survivors; the client's state then becomes finished so that no
 * second request is answered. */
pvg_status pvg_secagg_client_unmask(pvg_secagg_client *c, const uint8_t *in, size_t in_len,
                                    uint8_t **out, size_t *out_len, pvg_error *err) PVG_WARN_UNUSED;

/* ---- server ---- */
typedef struct pvg_secagg_server pvg_secagg_server;

/* new: a server for params p (which it copies). Errors: INVALID, NOMEM. */
pvg_status pvg_secagg_server_new(const pvg_secagg_params *p, pvg_secagg_server **out,
                                 pvg_error *err) PVG_WARN_UNUSED;
void pvg_secagg_server_free(pvg_secagg_server *s);

/* Worker threads for unmasking (1..64, default 1). */
void pvg_secagg_server_set_threads(pvg_secagg_server *s, unsigned threads);

/* Accepts one client message of the current round. Errors (the server's
 * state is unchanged): PVG_ERR_INVALID malformed, PVG_ERR_NOT_FOUND sender
 * unknown or not in the previous round's set, PVG_ERR_STATE message of
 * another round or session finished/aborted, PVG_ERR_EXISTS a replay (the
 * sender already sent this round), PVG_ERR_CRYPTO invalid public key. */
pvg_status pvg_secagg_server_receive(pvg_secagg_server *s, const uint8_t *msg, size_t len,
                                     pvg_error *err) PVG_WARN_UNUSED;

/* Closes the current round (the transport decides when: all arrived or a
 * deadline passed). Rounds 0-2: prepares the replies for the clients that
 * sent; round 3: recovers the masks and computes the sum. Returns
 * PVG_ERR_ABORTED (and the session is aborted for good, nothing computed
 * or revealed) when fewer than t clients sent in this round, or when some
 * client's secret cannot be recovered from t shares; PVG_ERR_CRYPTO when
 * shares are forged beyond recovery (also aborts). */
pvg_status pvg_secagg_server_advance(pvg_secagg_server *s, pvg_error *err) PVG_WARN_UNUSED;

/* The reply for client `id` after advance of rounds 0-2 (new buffer, free
 * with pvg_free). PVG_ERR_NOT_FOUND when the client did not send in the
 * closed round; PVG_ERR_STATE when no reply is due. */
pvg_status pvg_secagg_server_message_for(pvg_secagg_server *s, uint32_t id, uint8_t **out,
                                         size_t *out_len, pvg_error *err) PVG_WARN_UNUSED;

/* Current round: 0..3, 4 done, -1 aborted. */
int pvg_secagg_server_round(const pvg_secagg_server *s);

/* After the final advance: copies the sum (uint16_t[d], uint32_t[d] or
 * uint64_t[d] per bits).
 * PVG_ERR_STATE before. */
pvg_status pvg_secagg_server_result(const pvg_secagg_server *s, void *sum,
                                    pvg_error *err) PVG_WARN_UNUSED;

/* Ids whose inputs are in the sum (the clients whose MASKED message was
 * accepted), ascending; returns the count and fills ids (room for n) when
 * not NULL. Valid after round 2 closed. */
size_t pvg_secagg_server_survivors(const pvg_secagg_server *s, uint32_t *ids);

/* ---- masks (exposed for tests and benchmarks) ---- */
/* vec[0..len) (+/-)= ChaCha20 keystream of seed, words `offset`..offset+len
 * of the stream, mod 2^bits (16, 32 or 64; vec is uint16_t, uint32_t or
 * uint64_t). offset must be a multiple of 64 / (bits / 8) words (a block
 * boundary: 32, 16 or 8). sign +1 or -1. Fast, chunked kernel. */
void pvg_secagg_mask_add(void *vec, size_t offset, size_t len, unsigned bits,
                         const uint8_t seed[32], int sign);
/* As pvg_secagg_mask_add with ChaCha of `rounds` rounds (8, 12 or 20; 0 = 20). */
void pvg_secagg_mask_add_rounds(void *vec, size_t offset, size_t len, unsigned bits,
                                unsigned rounds, const uint8_t seed[32], int sign);
/* vec[0..len) = the ChaCha20 keystream words 0..len of seed (the mask
 * written straight into the vector, no extra pass). */
void pvg_secagg_mask_set(void *vec, size_t len, unsigned bits, const uint8_t seed[32]);
/* Naive reference of mask_add (ChaCha20) and mask_add_rounds: expands the
 * whole stream 0..offset+len with pvg_secagg_chacha_block_ref. */
void pvg_secagg_mask_add_ref(void *vec, size_t offset, size_t len, unsigned bits,
                             const uint8_t seed[32], int sign);
void pvg_secagg_mask_add_ref_rounds(void *vec, size_t offset, size_t len, unsigned bits,
                                    unsigned rounds, const uint8_t seed[32], int sign);
/* One block of ChaCha with `rounds` rounds (even, >= 2) in the RFC 8439
 * layout (32-bit counter, 96-bit nonce), written naively from the
 * specification: the reference the kernels are tested against (and which
 * the tests tie to libsodium's ChaCha20 at 20 rounds). */
void pvg_secagg_chacha_block_ref(const uint8_t key[32], uint32_t counter, const uint8_t nonce[12],
                                 unsigned rounds, uint8_t out[64]);

/* The key derivation of session p (checked params): out =
 * crypto_kdf_derive_from_key(32, purpose, "PVGSECAG", BLAKE2b-256("PVSA-kdf-v3" || shared ||
 * session || lo_id LE32 || hi_id LE32 || mode)) with lo_id < hi_id and mode the session's 20
 * bytes: wire version u8 (pvg_secagg_wire_version), bits u8, mask rounds u8 (0 read as 20), 0 u8,
 * n, k, t, d (LE32 each). purpose 1 = pairwise mask seed, 2 = share-box key. Binding the mode
 * means parties of different modes (lane, PRG, graph) never derive masks that cancel nor open
 * each other's boxes. */
void pvg_secagg_kdf(const pvg_secagg_params *p, const uint8_t shared[32], uint32_t a, uint32_t b,
                    uint64_t purpose, uint8_t out[32]);

/* ---- quantisation ---- */
/* Maps x[0..d) to integers: clip to [-clip, clip] (counting clipped
 * coordinates in *n_clipped), scale to [0, 2 * clip * scale], stochastic
 * rounding (unbiased) with rng. out: uint16_t[d], uint32_t[d] or
 * uint64_t[d] per bits (16, 32 or 64).
 * Refuses (PVG_ERR_INVALID) when n_clients * (2 * clip * scale + 1) does not
 * fit below 2^bits (the sum would wrap), or clip/scale are not positive. */
pvg_status pvg_secagg_quantize(const float *x, size_t d, double clip, double scale, unsigned bits,
                               uint32_t n_clients, pvg_rng *rng, void *out, size_t *n_clipped,
                               pvg_error *err) PVG_WARN_UNUSED;
/* Inverse for a sum of n_summed quantised vectors: out[i] = sum[i] / scale
 * - n_summed * clip. */
pvg_status pvg_secagg_dequantize(const void *sum, size_t d, unsigned bits, double clip,
                                 double scale, uint32_t n_summed, double *out,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* ---- in-process simulation (tests, CLI, benchmarks) ---- */
typedef struct pvg_secagg_sim_options {
    pvg_secagg_params params; /* session is filled by the simulator */
    double dropout;           /* fraction of clients that drop, 0..1 */
    const uint32_t *inputs;   /* n * d inputs (taken mod 2^bits when bits = 16) or NULL for
                                 random */
    pvg_rng *rng;             /* borrowed; drives keys, dropouts, inputs */
    unsigned server_threads;  /* 1..64 */
    int allow_insecure_rng;   /* accept the deterministic test generator
                                 (reproducible runs; privguide/rng.h) */
} pvg_secagg_sim_options;

typedef struct pvg_secagg_sim_result {
    int exact;           /* 1 when the sum equals the plain sum of survivors */
    uint32_t *survivors; /* ascending ids in the sum */
    size_t n_survivors;
    uint64_t *sum;              /* d words, each mod 2^bits */
    size_t dropped_in_round[4]; /* clients that dropped before sending round r */
    double server_seconds, client_seconds_p50, client_seconds_max;
    double bytes_up_per_client, bytes_down_per_client; /* mean over survivors */
    double plain_vector_bytes;                         /* d * bits / 8 */
} pvg_secagg_sim_result;

/* Runs one session with every party in this process. round(dropout * n)
 * random clients drop; the first four of them drop before rounds 0, 1, 2, 3
 * (so every round sees a dropout), the others pick their round uniformly
 * among 0..3 (dropping at round 3 = not sending
 * UNMASK; its input is still in the sum). Returns PVG_OK (result filled),
 * PVG_ERR_ABORTED when too few survived (nothing revealed), PVG_ERR_POLICY
 * (the deterministic generator without allow_insecure_rng), or another
 * error. Free the result with pvg_secagg_sim_result_clear. */
pvg_status pvg_secagg_simulate(const pvg_secagg_sim_options *o, pvg_secagg_sim_result *r,
                               pvg_error *err) PVG_WARN_UNUSED;
void pvg_secagg_sim_result_clear(pvg_secagg_sim_result *r);

/* ---- joint sums among a few parties (mpc sum) ----
 *
 * P >= 3 parties, each with a private table of (group, value) rows, learn
 * the per-group totals over all parties and nothing else about the other
 * parties' values. Each party secret-shares its vector of per-group totals
 * (additive over Z_2^64, or Shamir t-of-P over GF(2^61-1)) to the others
 * over TCP on 127.0.0.1, sums the shares it receives, and publishes only
 * that partial sum; the totals are recovered from the partials. Semi-honest
 * model. The vector layout is either a group list agreed in advance
 * (options.groups: nothing about a party's groups is revealed; totals of
 * groups nobody has are 0) or the union of the parties' labels, exchanged
 * in the clear (each party's set of group labels, not its values, is then
 * revealed to the others). */

/* A table of groups (sorted, unique labels) with int64 totals in units of
 * 10^-decimals. */
typedef struct pvg_mpc_table pvg_mpc_table;

/* new: reads a CSV of "group,value" lines (an optional first line
 * "group,value" is a header; blank lines are skipped; a group may be
 * double-quoted with "" for a quote). Values are decimals with at most
 * `decimals` (0..9) fraction digits; rows of the same group add up.
 * When `allowed` (borrowed) is not NULL, every group must be in it.
 * Errors: PVG_ERR_IO (cannot read), PVG_ERR_INVALID with err->source =
 * path, err->line and err->column of the offending field. */
pvg_status pvg_mpc_table_read_csv(const char *path, unsigned decimals, const pvg_mpc_table *allowed,
                                  pvg_mpc_table **out, pvg_error *err) PVG_WARN_UNUSED;
/* new: reads a group list, one label per line (blank lines skipped, no
 * quoting; a repeated label is an error). Values are 0. Errors as for the
 * CSV reader, with file:line. */
pvg_status pvg_mpc_table_read_groups(const char *path, pvg_mpc_table **out,
                                     pvg_error *err) PVG_WARN_UNUSED;
/* 1 when `label` is in the table. */
int pvg_mpc_table_has(const pvg_mpc_table *t, const char *label);
/* new: an empty table; add rows with pvg_mpc_table_add. */
pvg_mpc_table *pvg_mpc_table_new(unsigned decimals) PVG_WARN_UNUSED;
/* Adds value (in units of 10^-decimals) to group `label` (1..255 bytes,
 * no NUL). Errors: INVALID (label), NOMEM, INVALID on int64 overflow. */
pvg_status pvg_mpc_table_add(pvg_mpc_table *t, const char *label, int64_t value,
                             pvg_error *err) PVG_WARN_UNUSED;
void pvg_mpc_table_free(pvg_mpc_table *t);
size_t pvg_mpc_table_count(const pvg_mpc_table *t);
/* Label (borrowed) and total of entry i < count, in label order. */
const char *pvg_mpc_table_label(const pvg_mpc_table *t, size_t i);
int64_t pvg_mpc_table_value(const pvg_mpc_table *t, size_t i);
unsigned pvg_mpc_table_decimals(const pvg_mpc_table *t);

typedef enum pvg_mpc_scheme { PVG_MPC_ADDITIVE = 1, PVG_MPC_SHAMIR = 2 } pvg_mpc_scheme;

typedef struct pvg_mpc_options {
    unsigned parties; /* P, 3..64 */
    unsigned me;      /* this party's index, 0..P-1 */
    unsigned port;    /* party i listens on 127.0.0.1:(port + i), 1024..65535-P */
    pvg_mpc_scheme scheme;
    unsigned threshold;          /* Shamir: 2..P (0 = P/2 + 1); ignored for additive */
    unsigned timeout_ms;         /* whole-protocol deadline (connects, every read/write) */
    pvg_rng *rng;                /* borrowed; the secure generator (a deterministic one is
                                    refused with PVG_ERR_POLICY unless allow_insecure_rng) */
    int allow_insecure_rng;      /* tests only: accept the deterministic generator */
    const pvg_mpc_table *groups; /* borrowed; the group list every party agreed on
                                    in advance (values ignored), or NULL to
                                    exchange the parties' labels */
} pvg_mpc_options;

/* Runs the protocol for this party. On success *out (new) holds the joint
 * totals of every group any party has. Errors: PVG_ERR_IO (socket errors,
 * deadline passed: "timed out waiting for party j"), PVG_ERR_INVALID
 * (malformed or inconsistent message from party j, with the reason),
 * PVG_ERR_CRYPTO (Shamir partials inconsistent), PVG_ERR_POLICY (the
 * deterministic generator without allow_insecure_rng). Never blocks past the
 * deadline. Not thread-safe with respect to the same port. */
pvg_status pvg_mpc_sum(const pvg_mpc_options *o, const pvg_mpc_table *mine, pvg_mpc_table **out,
                       pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
