/*
 * fl_coord.c - the server-side round coordinator of federated training:
 * registered clients, a Poisson-sampled cohort per round, one SecAgg+
 * session per round (secagg.h) whose four phases close when every expected
 * message arrived or at the phase's deadline (this coordinator's monotonic
 * clock), then the unmasked sum goes to the apply callback and the next
 * round starts.
 *
 * What it holds of a client: its identity (a pseudonym), its id in the
 * current cohort, and what the SecAgg server keeps (public keys, share
 * boxes it cannot open, the running sum of masked inputs). Never one
 * client's unmasked vector: the only unmasked vector is the sum, handed to
 * the callback and wiped.
 */
#include <privguide/fl_net.h>
#include <privguide/store.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct fl_client {
    uint8_t key[PVG_FL_NET_KEY_BYTES];
    uint32_t cohort_id; /* PVG_FL_NET_NO_ID when not in the current cohort */
    uint32_t next;      /* the next client in its hash bucket, or NONE */
    double last_seen;   /* the coordinator's clock at its last join, state or message */
    uint8_t submitted;  /* its message of the current phase was accepted */
    uint8_t told;       /* it was sent a STATE of the finished phase */
    uint8_t parked;     /* a long poll of it is parked: waits[wait_ix] */
    uint32_t wait_ix;
} fl_client;

/* A parked long poll (pvg_fl_coord_park). */
typedef struct fl_wait {
    uint8_t key[PVG_FL_NET_KEY_BYTES];
    pvg_fl_wake_fn wake;
    void *waiter;
    uint64_t round; /* the (round, phase) the client saw */
    int phase;
    double until; /* real monotonic time its wait ends */
} fl_wait;

#define NONE 0xFFFFFFFFu

/* A round's broadcast, shared by the coordinator and every answer still
 * sending it (pvg_fl_coord_broadcast_ref): freed by the last release. */
struct pvg_fl_broadcast_ref {
    atomic_uint refs;
    uint8_t *p; /* malloc'd by the broadcast callback */
    size_t len;
};

void pvg_fl_broadcast_ref_free(pvg_fl_broadcast_ref *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    free(r->p);
    free(r);
}

struct pvg_fl_coord {
    pvg_fl_coord_options o;
    pthread_mutex_t mu;
    pthread_cond_t wake;  /* the thread: a message arrived, a client joined, stop */
    pthread_cond_t ended; /* a round ended */
    pthread_t thread;
    int thread_started, stop;

    fl_client *clients;
    uint32_t n_clients, cap_clients, capacity;
    int k_auto;        /* o.k was 0: k and t come from pvg_secagg_plan_params each round */
    uint32_t k_cap;    /* the largest k a round may use (the message size limit) */
    uint32_t *bucket;  /* hash index of the registry: head client per bucket */
    uint32_t n_bucket; /* a power of two, >= 2 cap_clients */
    uint8_t hash_key[16];

    uint64_t round;
    int phase, closing;
    double phase_started, deadline, next_start, round_started;
    uint32_t *cohort; /* registry index per cohort id */
    uint32_t arrived, expected;
    double last_arrival; /* the clock at the phase's last accepted message */
    pvg_secagg_params params;
    pvg_secagg_server *sa;
    uint8_t *bcast; /* bref's bytes, or NULL */
    size_t bcast_len;
    pvg_fl_broadcast_ref *bref; /* the coordinator's reference to the round's broadcast */
    uint8_t **reply;            /* per cohort id: the SecAgg reply of the phase (or NULL) */
    size_t *reply_len;
    uint32_t *u3; /* survivors (ids in the sum), ascending, in the unmask phase */
    uint32_t n_u3;
    pvg_fl_round_stats cur, last;
    int have_last;

    fl_wait *waits; /* parked long polls, unordered */
    uint32_t n_waits, cap_waits;
    double thread_wake; /* real monotonic time the thread next wakes by itself */
};

static double mono_real(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The CLOCK_MONOTONIC time `seconds` from now, for pthread_cond_timedwait. */
static struct timespec mono_in(double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long ns = ts.tv_nsec + (long long)(seconds * 1e9);
    ts.tv_sec += ns / 1000000000LL;
    ts.tv_nsec = ns % 1000000000LL;
    return ts;
}

/* The coordinator's clock: deadlines, expiry (injectable for tests). */
static double now_of(const pvg_fl_coord *c)
{
    return c->o.clock ? c->o.clock(c->o.clock_ctx) : mono_real();
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

const char *pvg_fl_phase_name(int phase)
{
    static const char *names[] = {"idle",   "advertise", "share",   "masked",
                                  "unmask", "done",      "aborted", "finished"};
    return phase >= 0 && phase <= 7 ? names[phase] : "unknown";
}

/* The assumptions behind the default k and t (docs/fl-protocol.md): up to
 * 30% of a cohort drops, up to 5% colludes with a server that follows the
 * protocol, 40 bits of security and a session that aborts for want of shares
 * with probability at most 2^-20. The clients' own majority rule (t > (k +
 * 1) / 2) guards against a server that lies about who dropped. */
static pvg_secagg_plan_options plan_options(uint32_t n)
{
    pvg_secagg_plan_options po;
    memset(&po, 0, sizeof po);
    po.n = n;
    po.dropout = 0.30;
    po.corrupt = 0.05;
    po.sigma = 40;
    po.eta = 20;
    return po;
}

/* The most clients a round sums: SecAgg's limit, or the options' smaller
 * max_cohort (the encoding's room before its sum wraps). */
static uint32_t cohort_limit(const pvg_fl_coord_options *o)
{
    return o->max_cohort ? o->max_cohort : PVG_SECAGG_MAX_CLIENTS;
}

/* The registry's capacity at sampling rate q for cohorts of at most lim (fl_net.h). */
static uint32_t capacity_of(double q, uint32_t lim)
{
    if (q >= 1) return lim;
    /* the largest N with N q + 10 sqrt(N q (1 - q)) <= L: a quadratic in sqrt(N) */
    double L = lim, b = 10 * sqrt(q * (1 - q));
    double x = (-b + sqrt(b * b + 4 * q * L)) / (2 * q);
    double n = floor(x * x);
    while (n > 0 && n * q + 10 * sqrt(n * q * (1 - q)) > L)
        n -= 1;
    return n >= PVG_FL_NET_MAX_REGISTERED ? PVG_FL_NET_MAX_REGISTERED : (uint32_t)n;
}

static uint32_t bucket_of(const pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES])
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, PVG_FL_NET_KEY_BYTES, c->hash_key);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)h[i] << (8 * i);
    return (uint32_t)(v & (c->n_bucket - 1));
}

/* Rebuilds the hash index over clients[0..n_clients) (lock held). */
static void index_rebuild(pvg_fl_coord *c)
{
    for (uint32_t b = 0; b < c->n_bucket; b++)
        c->bucket[b] = NONE;
    for (uint32_t i = 0; i < c->n_clients; i++) {
        uint32_t b = bucket_of(c, c->clients[i].key);
        c->clients[i].next = c->bucket[b];
        c->bucket[b] = i;
    }
}

/* Drops registrations not seen for expire_seconds (lock held, between rounds
 * only: the cohort refers to registry indices). */
static void expire_clients(pvg_fl_coord *c, double now)
{
    if ((c->phase >= PVG_FL_PHASE_ADVERTISE && c->phase <= PVG_FL_PHASE_UNMASK) || c->closing)
        return;
    uint32_t w = 0;
    for (uint32_t i = 0; i < c->n_clients; i++) {
        if (!c->clients[i].parked && now - c->clients[i].last_seen > c->o.expire_seconds) continue;
        if (w != i) c->clients[w] = c->clients[i];
        w++;
    }
    if (w == c->n_clients) return;
    sodium_memzero(c->clients + w, sizeof *c->clients * (c->n_clients - w));
    c->n_clients = w;
    index_rebuild(c);
}

/* Frees the round's SecAgg state and replies (lock held or thread-only). */
static void round_clear(pvg_fl_coord *c)
{
    pvg_secagg_server_free(c->sa);
    c->sa = NULL;
    if (c->reply) {
        for (uint32_t i = 0; i < c->params.n; i++)
            free(c->reply[i]);
    }
    free(c->reply);
    free(c->reply_len);
    c->reply = NULL;
    c->reply_len = NULL;
    free(c->u3);
    c->u3 = NULL;
    c->n_u3 = 0;
    for (uint32_t i = 0; i < c->n_clients; i++) {
        c->clients[i].cohort_id = PVG_FL_NET_NO_ID;
        c->clients[i].submitted = 0;
    }
    free(c->cohort);
    c->cohort = NULL;
}

static void round_end(pvg_fl_coord *c, int phase, const char *why)
{
    double now = now_of(c);
    c->cur.phase = phase;
    c->cur.seconds = now - c->round_started;
    if (why) snprintf(c->cur.error, sizeof c->cur.error, "%s", why);
    c->last = c->cur;
    c->have_last = 1;
    round_clear(c);
    c->phase = phase;
    c->next_start = now + c->o.start_delay;
    pthread_cond_broadcast(&c->ended);
}

/* Starts a round (lock held): samples the cohort, opens the SecAgg session.
 * Returns 0 started, 1 the cohort was too small (retry later), -1 error
 * (recorded as an aborted round). */
static int round_start(pvg_fl_coord *c)
{
    expire_clients(c, now_of(c));
    if (c->n_clients < c->o.min_clients) return 1;
    uint32_t *cohort = malloc(sizeof *cohort * (c->n_clients ? c->n_clients : 1));
    if (!cohort) return 1;
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->n_clients; i++)
        if (c->o.sample_rate >= 1.0 || pvg_rng_double(c->o.rng) < c->o.sample_rate) cohort[n++] = i;
    if (n < c->o.min_cohort || n < c->o.min_survivors) {
        free(cohort);
        c->next_start = now_of(c) + (c->o.start_delay > 0.05 ? c->o.start_delay : 0.05);
        return 1;
    }
    memset(&c->cur, 0, sizeof c->cur);
    c->round++;
    c->cur.round = c->round;
    c->cur.registered = c->n_clients;
    c->cur.cohort = n;
    c->round_started = now_of(c);
    if (n > cohort_limit(&c->o)) {
        /* the registry's capacity makes this improbable (< 1e-23 a round); never retried
           silently: the round is recorded as aborted and the next one resamples */
        free(cohort);
        char why[PVG_ERROR_TEXT_LEN];
        snprintf(why, sizeof why,
                 "sampled cohort of %u clients exceeds the limit of %u (%s): nothing was run", n,
                 cohort_limit(&c->o),
                 c->o.max_cohort ? "max_cohort, the encoding's room" : "SecAgg's");
        round_end(c, PVG_FL_PHASE_ABORTED, why);
        return -1;
    }
    pvg_secagg_params p;
    memset(&p, 0, sizeof p);
    p.n = n;
    if (c->k_auto) {
        /* k and t from the SecAgg+ analysis for this cohort (see plan_options) */
        pvg_secagg_plan_options po = plan_options(n);
        pvg_secagg_plan plan;
        if (pvg_secagg_plan_params(&po, &plan, NULL) == PVG_OK && plan.k <= c->k_cap) {
            p.k = plan.k;
            p.t = plan.t;
        } else {
            p.k = n <= c->k_cap + 1 ? n - 1 : (c->k_cap & ~1u);
            p.t = (p.k + 1) / 2 + 1;
        }
    } else {
        p.k = n <= c->o.k + 1 ? n - 1 : (c->o.k & ~1u);
        p.t = (p.k + 1) / 2 + 1; /* a strict majority of every neighbourhood of k + 1 holders */
    }
    p.d = c->o.d;
    p.bits = c->o.lane_bits ? c->o.lane_bits : 32;
    /* the masks' PRG: ChaCha8 unless asked (docs/secagg.md "Masks"); SecAgg reads 0 as 20 */
    p.mask_rounds = c->o.mask_rounds == 0 ? 8 : c->o.mask_rounds == 20 ? 0 : c->o.mask_rounds;
    pvg_rng_bytes(c->o.rng, p.session, sizeof p.session);
    c->cur.k = p.k;
    c->cur.t = p.t;
    c->cur.lane_bits = p.bits;
    c->cur.mask_rounds = p.mask_rounds ? p.mask_rounds : 20;
    c->params = p;
    c->cohort = cohort;
    for (uint32_t i = 0; i < n; i++)
        c->clients[cohort[i]].cohort_id = i;
    pvg_error e;
    pvg_error_clear(&e);
    double t0 = mono_real();
    c->reply = calloc(n, sizeof *c->reply);
    c->reply_len = calloc(n, sizeof *c->reply_len);
    if (!c->reply || !c->reply_len) {
        round_end(c, PVG_FL_PHASE_ABORTED, "out of memory");
        return -1;
    }
    if (pvg_secagg_server_new(&p, &c->sa, &e) != PVG_OK) {
        round_end(c, PVG_FL_PHASE_ABORTED, e.text);
        return -1;
    }
    pvg_secagg_server_set_threads(c->sa, c->o.server_threads);
    pvg_fl_broadcast_ref_free(c->bref);
    c->bref = NULL;
    c->bcast = NULL;
    c->bcast_len = 0;
    /* without a broadcast callback the broadcast is empty (0 bytes) */
    uint8_t *b = NULL;
    size_t bl = 0;
    if (c->o.broadcast && c->o.broadcast(c->o.ctx, c->round, &b, &bl, &e) != PVG_OK) {
        round_end(c, PVG_FL_PHASE_ABORTED, e.text);
        return -1;
    }
    if (!b) b = malloc(1);
    c->bref = b ? malloc(sizeof *c->bref) : NULL;
    if (!c->bref) {
        free(b);
        round_end(c, PVG_FL_PHASE_ABORTED, "out of memory");
        return -1;
    }
    atomic_init(&c->bref->refs, 1);
    c->bref->p = b;
    c->bref->len = bl;
    c->bcast = b;
    c->bcast_len = bl;
    c->cur.server_seconds += mono_real() - t0;
    c->phase = PVG_FL_PHASE_ADVERTISE;
    c->phase_started = now_of(c);
    c->deadline = c->phase_started + c->o.phase_seconds[0];
    c->arrived = 0;
    c->last_arrival = c->phase_started;
    c->expected = n;
    return 0;
}

/* Closes the current phase (lock held on entry and exit; released while the
 * SecAgg server works, with `closing` set so no message is taken). */

/* The unmasked sum as the apply callback takes it: d uint32 words, each the
 * sum mod 2^lane (a 16-bit lane's words widened). */
static pvg_status sum_result(pvg_fl_coord *c, uint32_t *sum, pvg_error *e)
{
    if (c->params.bits == 32) return pvg_secagg_server_result(c->sa, sum, e);
    size_t d = c->params.d;
    uint16_t *s16 = sodium_malloc(sizeof *s16 * (d ? d : 1));
    if (!s16) return pvg_error_set(e, PVG_ERR_NOMEM, "sum");
    pvg_status st = pvg_secagg_server_result(c->sa, s16, e);
    if (st == PVG_OK)
        for (size_t i = 0; i < d; i++)
            sum[i] = s16[i];
    sodium_memzero(s16, sizeof *s16 * d);
    sodium_free(s16);
    return st;
}

static void phase_close(pvg_fl_coord *c)
{
    int ph = c->phase;
    c->cur.arrived[ph - 1] = c->arrived;
    c->cur.phase_seconds[ph - 1] = now_of(c) - c->phase_started;
    c->closing = 1;
    pthread_mutex_unlock(&c->mu);

    double t0 = mono_real();
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = pvg_secagg_server_advance(c->sa, &e);
    uint8_t **reply = NULL;
    size_t *reply_len = NULL;
    uint32_t *u3 = NULL, n_u3 = 0, expected = 0;
    uint32_t *sum = NULL;
    if (st == PVG_OK && ph < PVG_FL_PHASE_UNMASK) {
        reply = calloc(c->params.n, sizeof *reply);
        reply_len = calloc(c->params.n, sizeof *reply_len);
        if (!reply || !reply_len) st = pvg_error_set(&e, PVG_ERR_NOMEM, "replies");
        for (uint32_t i = 0; st == PVG_OK && i < c->params.n; i++) {
            pvg_error e2;
            pvg_status s2 = pvg_secagg_server_message_for(c->sa, i, &reply[i], &reply_len[i], &e2);
            if (s2 == PVG_OK)
                expected++;
            else if (s2 != PVG_ERR_NOT_FOUND)
                st = pvg_error_set(&e, s2, "reply for client %u: %s", i, e2.text);
        }
        if (st == PVG_OK && ph == PVG_FL_PHASE_MASKED) {
            u3 = malloc(sizeof *u3 * c->params.n);
            if (!u3)
                st = pvg_error_set(&e, PVG_ERR_NOMEM, "survivors");
            else
                n_u3 = (uint32_t)pvg_secagg_server_survivors(c->sa, u3);
            /* the survivor floor: fewer masked inputs than n_min would reveal a sum
               with less noise than was accounted; abort before any unmask request */
            if (st == PVG_OK && n_u3 < c->o.min_survivors)
                st = pvg_error_set(&e, PVG_ERR_ABORTED,
                                   "%u masked inputs, fewer than the survivor floor %u: "
                                   "nothing unmasked",
                                   n_u3, c->o.min_survivors);
        }
    } else if (st == PVG_OK) {
        sum = sodium_malloc(sizeof *sum * c->params.d);
        if (!sum) st = pvg_error_set(&e, PVG_ERR_NOMEM, "sum");
        if (st == PVG_OK) st = sum_result(c, sum, &e);
        if (st == PVG_OK) {
            n_u3 = (uint32_t)pvg_secagg_server_survivors(c->sa, NULL);
            if (c->o.apply) st = c->o.apply(c->o.ctx, c->round, sum, c->params.d, n_u3, &e);
        }
        if (sum) {
            sodium_memzero(sum, sizeof *sum * c->params.d);
            sodium_free(sum);
        }
    }
    double spent = mono_real() - t0;

    pthread_mutex_lock(&c->mu);
    c->closing = 0;
    c->cur.server_seconds += spent;
    if (st != PVG_OK) {
        if (reply)
            for (uint32_t i = 0; i < c->params.n; i++)
                free(reply[i]);
        free(reply);
        free(reply_len);
        free(u3);
        char why[PVG_ERROR_TEXT_LEN + 32];
        snprintf(why, sizeof why, "%s phase: %.280s", pvg_fl_phase_name(ph), e.text);
        round_end(c, PVG_FL_PHASE_ABORTED, why);
        return;
    }
    if (ph == PVG_FL_PHASE_UNMASK) {
        c->cur.survivors = n_u3;
        round_end(c, PVG_FL_PHASE_DONE, NULL);
        return;
    }
    for (uint32_t i = 0; i < c->params.n; i++)
        free(c->reply[i]);
    free(c->reply);
    free(c->reply_len);
    c->reply = reply;
    c->reply_len = reply_len;
    if (u3) {
        free(c->u3);
        c->u3 = u3;
        c->n_u3 = n_u3;
        c->cur.survivors = n_u3;
    }
    for (uint32_t i = 0; i < c->params.n; i++)
        c->clients[c->cohort[i]].submitted = 0;
    c->phase = ph + 1;
    c->phase_started = now_of(c);
    c->deadline = c->phase_started + c->o.phase_seconds[ph];
    c->arrived = 0;
    c->last_arrival = c->phase_started;
    c->expected = expected;
}

/* The messages a phase needs before the grace rule may close it: SecAgg's
 * threshold and the survivor floor (fewer would abort the round anyway). */
static uint32_t quorum_of(const pvg_fl_coord *c)
{
    return c->params.t > c->o.min_survivors ? c->params.t : c->o.min_survivors;
}

/* The latest time any client still expected in the phase (no message yet)
 * was seen; -INFINITY when none is missing (lock held). A live client polls
 * every retry_ms, or waits parked in a long poll (seen `now`: a parked wait
 * in a round lasts at most half the grace and, when it runs out, leaves the
 * client seen when it parked, so a client that died while parked turns
 * silent for the grace one grace after it parked), so one silent for the
 * grace has stopped (or computes for longer than the grace). */
static double missing_seen(const pvg_fl_coord *c, double now)
{
    double newest = -INFINITY;
    for (uint32_t i = 0; i < c->params.n; i++) {
        const fl_client *cl = &c->clients[c->cohort[i]];
        int expected = c->phase == PVG_FL_PHASE_ADVERTISE || (c->reply && c->reply[i]);
        double seen = cl->parked ? now : cl->last_seen;
        if (expected && !cl->submitted && seen > newest) newest = seen;
    }
    return newest;
}

static fl_client *find_client(pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES], int touch);

/* Removes parked wait i into *out (lock held): its client is unparked, and
 * seen now when touch (the wait ends because the state changed, or the
 * client asked again); a wait that ran out leaves the client seen when it
 * parked, so one that died parked is silent for the grace at most half a
 * grace after its wait ended. The last wait moves into slot i. */
static void wait_remove(pvg_fl_coord *c, uint32_t i, fl_wait *out, int touch)
{
    *out = c->waits[i];
    fl_client *cl = find_client(c, out->key, touch);
    if (cl) cl->parked = 0;
    uint32_t last = --c->n_waits;
    if (i != last) {
        c->waits[i] = c->waits[last];
        fl_client *m = find_client(c, c->waits[i].key, 0);
        if (m) m->wait_ix = i;
    }
    sodium_memzero(&c->waits[last], sizeof c->waits[last]);
}

/* Takes up to max waits that are due (lock held): every one when all, else
 * those whose (round, phase) changed or whose time is up. */
static uint32_t waits_take(pvg_fl_coord *c, int all, fl_wait *buf, uint32_t max)
{
    uint32_t n = 0;
    double now = mono_real();
    /* downwards: the wait moved into a freed slot was already looked at */
    for (uint32_t i = c->n_waits; i-- > 0 && n < max;) {
        const fl_wait *w = &c->waits[i];
        int changed = all || w->round != c->round || w->phase != c->phase;
        if (changed || now >= w->until) wait_remove(c, i, &buf[n++], changed);
    }
    return n;
}

#define WAKE_CHUNK 64

/* Ends due waits (lock held on entry and exit, released while the wakes
 * run); returns the number ended. */
static uint32_t waits_wake(pvg_fl_coord *c, int all)
{
    fl_wait buf[WAKE_CHUNK];
    uint32_t total = 0, n;
    while ((n = waits_take(c, all, buf, WAKE_CHUNK)) > 0) {
        pthread_mutex_unlock(&c->mu);
        for (uint32_t i = 0; i < n; i++)
            buf[i].wake(buf[i].waiter);
        pthread_mutex_lock(&c->mu);
        total += n;
    }
    return total;
}

/* The real monotonic time the first parked wait ends (INFINITY: none). */
static double waits_next(const pvg_fl_coord *c)
{
    double t = INFINITY;
    for (uint32_t i = 0; i < c->n_waits; i++)
        if (c->waits[i].until < t) t = c->waits[i].until;
    return t;
}

static void *coord_thread(void *arg)
{
    pvg_fl_coord *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        double now = now_of(c), wake_at = now + 1.0;
        if (c->phase >= PVG_FL_PHASE_ADVERTISE && c->phase <= PVG_FL_PHASE_UNMASK) {
            /* the grace: the quorum is in, no message arrived and every client still
               expected has been silent (no poll, no message) for phase_grace seconds */
            double quiet_at = INFINITY;
            if (c->o.phase_grace > 0 && c->arrived >= quorum_of(c)) {
                double seen = missing_seen(c, now);
                quiet_at = (seen > c->last_arrival ? seen : c->last_arrival) + c->o.phase_grace;
            }
            if (c->arrived >= c->expected || now >= c->deadline || now >= quiet_at) {
                phase_close(c);
                continue;
            }
            wake_at = c->deadline < quiet_at ? c->deadline : quiet_at;
        } else if (c->phase != PVG_FL_PHASE_FINISHED) {
            if (c->o.max_rounds && c->round >= c->o.max_rounds) {
                c->phase = PVG_FL_PHASE_FINISHED;
                pthread_cond_broadcast(&c->ended);
                continue;
            }
            if (c->n_clients >= c->o.min_clients) {
                if (now >= c->next_start) { /* expires registrations, then samples */
                    (void)round_start(c);
                    continue;
                }
                wake_at = c->next_start;
            }
        }
        /* parked long polls: on a change of (round, phase), or at their end; after the
           transitions above, so a round's end and the finished phase come under one hold */
        if (c->n_waits && waits_wake(c, 0)) continue;
        double d = wake_at - now;
        if (d < 0) d = 0;
        if (d > 1.0) d = 1.0;
        double real = mono_real(), w = waits_next(c) - real;
        if (w < d) d = w < 0 ? 0 : w;
        c->thread_wake = real + d;
        struct timespec ts = mono_in(d);
        pthread_cond_timedwait(&c->wake, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

pvg_status pvg_fl_coord_new(const pvg_fl_coord_options *o, pvg_fl_coord **out, pvg_error *err)
{
    pvg_error_clear(err);
    if (!o || !out) return pvg_error_set(err, PVG_ERR_INVALID, "fl coordinator: NULL argument");
    *out = NULL;
    if (pvg_init() != PVG_OK) return pvg_error_set(err, PVG_ERR_INTERNAL, "libsodium init");
    if (o->d < 1 || o->d > PVG_SECAGG_MAX_DIM)
        return pvg_error_set(err, PVG_ERR_INVALID, "fl coordinator: d = %u, want 1..%u", o->d,
                             PVG_SECAGG_MAX_DIM);
    if (!(o->sample_rate > 0 && o->sample_rate <= 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "fl coordinator: sample_rate %g, want (0, 1]",
                             o->sample_rate);
    if (!o->rng) return pvg_error_set(err, PVG_ERR_INVALID, "fl coordinator: rng is NULL");
    pvg_status st = pvg_rng_require_secure(o->rng, o->allow_insecure_rng, "fl coordinator", err);
    if (st != PVG_OK) return st;
    for (int i = 0; i < 4; i++)
        if (o->phase_seconds[i] < 0 || o->phase_seconds[i] > 86400 || isnan(o->phase_seconds[i]))
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "fl coordinator: phase_seconds[%d] = %g, want 0..86400", i,
                                 o->phase_seconds[i]);
    if (o->start_delay < 0 || o->start_delay > 86400 || isnan(o->start_delay))
        return pvg_error_set(err, PVG_ERR_INVALID, "fl coordinator: start_delay %g, want 0..86400",
                             o->start_delay);
    if (o->phase_grace < 0 || o->phase_grace > 86400 || isnan(o->phase_grace))
        return pvg_error_set(err, PVG_ERR_INVALID, "fl coordinator: phase_grace %g, want 0..86400",
                             o->phase_grace);
    if (o->expire_seconds < 0 || isnan(o->expire_seconds))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fl coordinator: expire_seconds %g, want >= 0 (0: 600)",
                             o->expire_seconds);
    if (o->lane_bits != 0 && o->lane_bits != 16 && o->lane_bits != 32)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fl coordinator: lane_bits %u, want 0 (32), 16 or 32", o->lane_bits);
    if (o->mask_rounds != 0 && o->mask_rounds != 8 && o->mask_rounds != 12 && o->mask_rounds != 20)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fl coordinator: mask_rounds %u, want 0 (8), 8, 12 or 20",
                             o->mask_rounds);
    if (o->max_cohort != 0 && (o->max_cohort < 3 || o->max_cohort > PVG_SECAGG_MAX_CLIENTS))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fl coordinator: max_cohort %u, want 0 (SecAgg's %u) or 3..%u",
                             o->max_cohort, PVG_SECAGG_MAX_CLIENTS, PVG_SECAGG_MAX_CLIENTS);
    if (o->server_threads > 64)
        return pvg_error_set(err, PVG_ERR_INVALID, "fl coordinator: server_threads %u, want 1..64",
                             o->server_threads);
    if (o->fl_config) {
        /* the vectors are encoded updates: their lane must hold the largest cohort's sum */
        unsigned lane = o->lane_bits ? o->lane_bits : 32;
        if (o->fl_config->bits != lane)
            return pvg_error_set_at(err, PVG_ERR_INVALID, "lane_bits", 0, 0, -1,
                                    "fl coordinator: lane_bits %u, the config encodes its updates "
                                    "mod 2^%u",
                                    lane, o->fl_config->bits);
        size_t fd = pvg_fl_update_dim(o->fl_config, o->fl_items);
        if (fd != o->d)
            return pvg_error_set_at(err, PVG_ERR_INVALID, "d", 0, 0, -1,
                                    "fl coordinator: d = %u, the config's update for %u items has "
                                    "%zu words",
                                    o->d, o->fl_items, fd);
        pvg_status cst = pvg_fl_config_check_cohort(o->fl_config, o->fl_items, cohort_limit(o),
                                                    o->min_survivors, err);
        if (cst != PVG_OK) return cst;
    }
    pvg_fl_coord *c = calloc(1, sizeof *c);
    if (!c) return pvg_error_set(err, PVG_ERR_NOMEM, "fl coordinator");
    c->o = *o;
    c->o.fl_config = NULL; /* borrowed for the check above only */
    if (!c->o.min_clients) c->o.min_clients = 3;
    if (!c->o.min_cohort) c->o.min_cohort = 3;
    if (c->o.min_clients < 3 || c->o.min_cohort < 3) {
        free(c);
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fl coordinator: min_clients and min_cohort must be >= 3");
    }
    if (c->o.min_survivors > PVG_SECAGG_MAX_CLIENTS) {
        free(c);
        return pvg_error_set(err, PVG_ERR_INVALID, "fl coordinator: min_survivors %u, want <= %u",
                             o->min_survivors, PVG_SECAGG_MAX_CLIENTS);
    }
    c->capacity = capacity_of(c->o.sample_rate, cohort_limit(&c->o));
    if (!c->o.k) {
        /* the largest cohort's plan bounds every round's k (the message limit) */
        c->k_auto = 1;
        uint32_t nmax = c->capacity < PVG_SECAGG_MAX_CLIENTS ? c->capacity : PVG_SECAGG_MAX_CLIENTS;
        pvg_secagg_plan_options po = plan_options(nmax < 3 ? 3 : nmax);
        pvg_secagg_plan plan;
        pvg_status pst = pvg_secagg_plan_params(&po, &plan, err);
        if (pst != PVG_OK) {
            free(c);
            return pst;
        }
        c->k_cap = plan.k;
    } else if (c->o.k < 2 || c->o.k >= PVG_SECAGG_MAX_CLIENTS) {
        free(c);
        return pvg_error_set(err, PVG_ERR_INVALID, "fl coordinator: k = %u, want 2..65534", o->k);
    }
    if (c->o.min_clients > c->capacity || c->o.min_cohort > c->capacity ||
        c->o.min_survivors > c->capacity) {
        pvg_status r = pvg_error_set(
            err, PVG_ERR_INVALID,
            "fl coordinator: min_clients %u, min_cohort %u, min_survivors %u: at sampling rate %g "
            "the registry takes at most %u clients (a cohort must fit %u)",
            c->o.min_clients, c->o.min_cohort, c->o.min_survivors, c->o.sample_rate, c->capacity,
            cohort_limit(&c->o));
        free(c);
        return r;
    }
    for (int i = 0; i < 4; i++)
        if (c->o.phase_seconds[i] == 0) c->o.phase_seconds[i] = 30;
    if (c->o.expire_seconds == 0) c->o.expire_seconds = 600;
    if (c->o.max_waits == 0) c->o.max_waits = PVG_FL_NET_MAX_WAITS;
    if (!c->o.server_threads) c->o.server_threads = 1;
    randombytes_buf(c->hash_key, sizeof c->hash_key);
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->wake, &ca);
    pthread_cond_init(&c->ended, &ca);
    pthread_condattr_destroy(&ca);
    c->phase = PVG_FL_PHASE_IDLE;
    c->next_start = now_of(c) + c->o.start_delay;
    if (pthread_create(&c->thread, NULL, coord_thread, c) != 0) {
        pvg_fl_coord_free(c);
        return pvg_error_set(err, PVG_ERR_INTERNAL, "fl coordinator: cannot start its thread");
    }
    c->thread_started = 1;
    *out = c;
    return PVG_OK;
}

void pvg_fl_coord_free(pvg_fl_coord *c)
{
    if (!c) return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_broadcast(&c->wake);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    pthread_mutex_lock(&c->mu);
    (void)waits_wake(c, 1); /* the owner answers what is still parked */
    pthread_mutex_unlock(&c->mu);
    free(c->waits);
    round_clear(c);
    pvg_fl_broadcast_ref_free(c->bref);
    if (c->clients) sodium_memzero(c->clients, sizeof *c->clients * c->cap_clients);
    free(c->clients);
    free(c->bucket);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->ended);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* The registered client with this key, marked seen now when touch; NULL
 * when none. */
static fl_client *find_client(pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES], int touch)
{
    if (!c->n_bucket) return NULL;
    for (uint32_t i = c->bucket[bucket_of(c, key)]; i != NONE; i = c->clients[i].next)
        if (sodium_memcmp(c->clients[i].key, key, PVG_FL_NET_KEY_BYTES) == 0) {
            if (touch) c->clients[i].last_seen = now_of(c);
            return &c->clients[i];
        }
    return NULL;
}

pvg_status pvg_fl_coord_join(pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES],
                             pvg_error *err)
{
    pvg_error_clear(err);
    pthread_mutex_lock(&c->mu);
    pvg_status st = PVG_OK;
    if (!find_client(c, key, 1)) {
        if (c->n_clients >= c->capacity) expire_clients(c, now_of(c));
        if (c->n_clients >= c->capacity) {
            st = pvg_error_set(err, PVG_ERR_BUSY,
                               "fl: the registry is full: %u clients, the most a round at "
                               "sampling rate %g can take (the limit is %u per cohort)",
                               c->n_clients, c->o.sample_rate, cohort_limit(&c->o));
        } else {
            if (c->n_clients == c->cap_clients) {
                uint32_t cap = c->cap_clients ? c->cap_clients * 2 : 64;
                uint32_t nb = c->n_bucket ? c->n_bucket : 128;
                while (nb < 2 * cap)
                    nb *= 2;
                fl_client *n = realloc(c->clients, sizeof *n * cap);
                if (n) c->clients = n;
                uint32_t *b = nb != c->n_bucket ? malloc(sizeof *b * nb) : c->bucket;
                if (!n || !b) {
                    pthread_mutex_unlock(&c->mu);
                    return pvg_error_set(err, PVG_ERR_NOMEM, "fl: registry");
                }
                c->cap_clients = cap;
                if (b != c->bucket) {
                    free(c->bucket);
                    c->bucket = b;
                    c->n_bucket = nb;
                    index_rebuild(c);
                }
            }
            fl_client *cl = &c->clients[c->n_clients];
            memcpy(cl->key, key, PVG_FL_NET_KEY_BYTES);
            cl->cohort_id = PVG_FL_NET_NO_ID; /* joins from the next round on */
            cl->submitted = 0;
            cl->told = 0;
            cl->parked = 0;
            cl->wait_ix = 0;
            cl->last_seen = now_of(c);
            uint32_t b = bucket_of(c, key);
            cl->next = c->bucket[b];
            c->bucket[b] = c->n_clients++;
            pthread_cond_broadcast(&c->wake);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

uint32_t pvg_fl_coord_registered(pvg_fl_coord *c)
{
    pthread_mutex_lock(&c->mu);
    expire_clients(c, now_of(c));
    uint32_t n = c->n_clients;
    pthread_mutex_unlock(&c->mu);
    return n;
}

uint32_t pvg_fl_coord_capacity(const pvg_fl_coord *c)
{
    return c->capacity;
}

size_t pvg_fl_coord_max_message(const pvg_fl_coord *c)
{
    /* MASKED: the 36-byte header and d words of the lane; SHARES: 36 + 36 + k * 180 */
    size_t masked = 36 + (size_t)c->o.d * (c->o.lane_bits == 16 ? 2 : 4);
    size_t shares = 72 + (size_t)((c->k_auto ? c->k_cap : c->o.k) + 1) * 180;
    return masked > shares ? masked : shares;
}

static pvg_status state_make(pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES], int waited,
                             uint8_t **out, size_t *out_len, pvg_error *err)
{
    pvg_error_clear(err);
    *out = NULL;
    *out_len = 0;
    pthread_mutex_lock(&c->mu);
    fl_client *cl = find_client(c, key, 1);
    if (!cl) {
        pthread_mutex_unlock(&c->mu);
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "fl: not registered (POST /v1/fl/join)");
    }
    int in_round = c->phase >= PVG_FL_PHASE_ADVERTISE && c->phase <= PVG_FL_PHASE_UNMASK;
    uint32_t id = in_round ? cl->cohort_id : PVG_FL_NET_NO_ID;
    const uint8_t *reply = NULL;
    size_t reply_len = 0;
    uint32_t ns = 0;
    if (id != PVG_FL_NET_NO_ID && !cl->submitted && !c->closing && c->phase > 1 && c->reply &&
        c->reply[id]) {
        reply = c->reply[id];
        reply_len = c->reply_len[id];
        if (c->phase == PVG_FL_PHASE_UNMASK) ns = c->n_u3;
    }
    size_t len = PVG_FL_NET_STATE_MIN + (size_t)ns * 4 + reply_len;
    uint8_t *b = calloc(1, len);
    if (!b) {
        pthread_mutex_unlock(&c->mu);
        return pvg_error_set(err, PVG_ERR_NOMEM, "fl: state");
    }
    memcpy(b, "PVFL", 4);
    b[4] = PVG_FL_NET_VERSION;
    b[5] = 1; /* STATE */
    put64(b + 8, c->round);
    b[16] = (uint8_t)c->phase;
    if (c->phase == PVG_FL_PHASE_FINISHED && !cl->told) {
        cl->told = 1;
        pthread_cond_broadcast(&c->ended); /* pvg_fl_coord_wait_told */
    }
    b[17] = (uint8_t)(id != PVG_FL_NET_NO_ID && cl->submitted);
    if ((c->phase == PVG_FL_PHASE_DONE || c->phase == PVG_FL_PHASE_FINISHED) && c->have_last &&
        c->last.round == c->round && c->last.phase == PVG_FL_PHASE_DONE)
        b[17] |= 2;         /* round `round` ended with its sum applied */
    if (waited) b[17] |= 4; /* the answer to a long poll */
    double now = now_of(c);
    if (in_round) {
        b[18] = (uint8_t)c->params.bits;        /* the SecAgg lane: 32 or 16 */
        b[19] = (uint8_t)c->params.mask_rounds; /* the mask PRG: 0 (ChaCha20), 12 or 8 */
        put32(b + 24, c->params.n);
        put32(b + 28, c->params.k);
        put32(b + 32, c->params.t);
        put32(b + 36, c->params.d);
        memcpy(b + 40, c->params.session, 16);
        double left = c->deadline - now;
        put32(b + 56, left > 0 ? (uint32_t)(left * 1000) : 0);
    }
    put32(b + 20, id);
    uint32_t retry = c->n_clients / 2;
    if (retry < 10) retry = 10;
    if (retry > 1000) retry = 1000;
    put32(b + 60, retry);
    put32(b + 64, in_round ? (uint32_t)c->bcast_len : 0);
    put32(b + 68, ns);
    put32(b + 72, (uint32_t)reply_len);
    for (uint32_t i = 0; i < ns; i++)
        put32(b + PVG_FL_NET_STATE_MIN + 4 * (size_t)i, c->u3[i]);
    if (reply_len) memcpy(b + PVG_FL_NET_STATE_MIN + (size_t)ns * 4, reply, reply_len);
    c->cur.bytes_out += len;
    pthread_mutex_unlock(&c->mu);
    *out = b;
    *out_len = len;
    return PVG_OK;
}

pvg_status pvg_fl_coord_state(pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES],
                              uint8_t **out, size_t *out_len, pvg_error *err)
{
    return state_make(c, key, 0, out, out_len, err);
}

pvg_status pvg_fl_coord_wait_answer(pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES],
                                    uint8_t **out, size_t *out_len, pvg_error *err)
{
    return state_make(c, key, 1, out, out_len, err);
}

pvg_status pvg_fl_coord_park(pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES],
                             uint64_t seen_round, int seen_phase, uint32_t wait_ms,
                             pvg_fl_wake_fn wake, void *waiter, int *parked, pvg_error *err)
{
    pvg_error_clear(err);
    if (parked) *parked = 0;
    if (!wake || !parked)
        return pvg_error_set(err, PVG_ERR_INVALID, "fl park: wake and parked are required");
    if (seen_phase < PVG_FL_PHASE_IDLE || seen_phase > PVG_FL_PHASE_FINISHED)
        return pvg_error_set(err, PVG_ERR_INVALID, "fl park: phase %d: 0..7 was expected",
                             seen_phase);
    pthread_mutex_lock(&c->mu);
    fl_client *cl = find_client(c, key, 1);
    if (!cl) {
        pthread_mutex_unlock(&c->mu);
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "fl: not registered (POST /v1/fl/join)");
    }
    if (wait_ms == 0 || seen_round != c->round || seen_phase != c->phase) {
        pthread_mutex_unlock(&c->mu); /* changed since the client looked: answer at once */
        return PVG_OK;
    }
    fl_wait old;
    int had = cl->parked;
    if (had) wait_remove(c, cl->wait_ix, &old, 1); /* one wait per client: the newer one */
    pvg_status st = PVG_OK;
    if (c->n_waits >= c->o.max_waits) {
        st = pvg_error_set(err, PVG_ERR_BUSY,
                           "fl: %u long polls are parked, the most this server holds; poll "
                           "without wait, or retry later",
                           c->n_waits);
    } else if (c->n_waits == c->cap_waits) {
        uint32_t cap = c->cap_waits ? c->cap_waits * 2 : 64;
        if (cap > c->o.max_waits) cap = c->o.max_waits;
        fl_wait *w = realloc(c->waits, sizeof *w * cap);
        if (!w)
            st = pvg_error_set(err, PVG_ERR_NOMEM, "fl: long polls");
        else {
            c->waits = w;
            c->cap_waits = cap;
        }
    }
    if (st == PVG_OK) {
        double ms = wait_ms < PVG_FL_NET_MAX_WAIT_MS ? wait_ms : PVG_FL_NET_MAX_WAIT_MS;
        int in_round = c->phase >= PVG_FL_PHASE_ADVERTISE && c->phase <= PVG_FL_PHASE_UNMASK;
        /* in a round the grace rule counts a parked client as alive: its wait lasts at most
           half the grace, and a wait that runs out leaves it seen when it parked, so one
           that died while parked is taken as stopped one grace after it parked, and a live
           one has half a grace to ask again */
        double half = c->o.phase_grace * 500;
        if (in_round && c->o.phase_grace > 0 && ms > half) ms = half < 1 ? 1 : half;
        cl = find_client(c, key, 0);
        fl_wait *w = &c->waits[c->n_waits];
        memcpy(w->key, key, PVG_FL_NET_KEY_BYTES);
        w->wake = wake;
        w->waiter = waiter;
        w->round = c->round;
        w->phase = c->phase;
        w->until = mono_real() + ms / 1000;
        cl->parked = 1;
        cl->wait_ix = c->n_waits++;
        *parked = 1;
        if (w->until < c->thread_wake) pthread_cond_broadcast(&c->wake);
    }
    pthread_mutex_unlock(&c->mu);
    if (had) old.wake(old.waiter);
    return st;
}

void pvg_fl_coord_wake_all(pvg_fl_coord *c)
{
    pthread_mutex_lock(&c->mu);
    (void)waits_wake(c, 1);
    pthread_mutex_unlock(&c->mu);
}

uint32_t pvg_fl_coord_parked(pvg_fl_coord *c)
{
    pthread_mutex_lock(&c->mu);
    uint32_t n = c->n_waits;
    pthread_mutex_unlock(&c->mu);
    return n;
}

pvg_status pvg_fl_coord_submit(pvg_fl_coord *c, const uint8_t key[PVG_FL_NET_KEY_BYTES],
                               const uint8_t *msg, size_t len, pvg_error *err)
{
    pvg_error_clear(err);
    if (len < 36)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "request body", 0, 0, (long long)len,
                                "a SecAgg message of at least 36 bytes (its header) was expected, "
                                "got %zu",
                                len);
    pthread_mutex_lock(&c->mu);
    pvg_status st = PVG_OK;
    /* a message after the last round (409) does not count as polling:
       pvg_fl_coord_wait_told waits only for clients that still ask for the state */
    fl_client *cl = find_client(c, key, c->phase != PVG_FL_PHASE_FINISHED);
    int in_round = c->phase >= PVG_FL_PHASE_ADVERTISE && c->phase <= PVG_FL_PHASE_UNMASK;
    uint32_t sender = (uint32_t)msg[24] | (uint32_t)msg[25] << 8 | (uint32_t)msg[26] << 16 |
                      (uint32_t)msg[27] << 24;
    if (!cl) {
        st = pvg_error_set(err, PVG_ERR_NOT_FOUND, "fl: not registered (POST /v1/fl/join)");
    } else if (!in_round || c->closing) {
        st = pvg_error_set(err, PVG_ERR_STATE, "fl: no phase takes messages now (%s%s)",
                           pvg_fl_phase_name(c->phase), c->closing ? ", closing" : "");
    } else if (cl->cohort_id == PVG_FL_NET_NO_ID) {
        st = pvg_error_set(err, PVG_ERR_NOT_FOUND, "fl: this client is not in round %llu's cohort",
                           (unsigned long long)c->round);
    } else if (sender != cl->cohort_id) {
        st = pvg_error_set_at(err, PVG_ERR_PERMISSION, "request body", 0, 0, 24,
                              "sender id %u is not this client's id %u in the cohort", sender,
                              cl->cohort_id);
    } else if (msg[5] != (uint8_t)(c->phase == PVG_FL_PHASE_ADVERTISE ? 1
                                   : c->phase == PVG_FL_PHASE_SHARE   ? 3
                                   : c->phase == PVG_FL_PHASE_MASKED  ? 5
                                                                      : 7)) {
        st = pvg_error_set_at(err, PVG_ERR_STATE, "request body", 0, 0, 5,
                              "message type %u is not the one of the %s phase", msg[5],
                              pvg_fl_phase_name(c->phase));
    } else {
        double t0 = mono_real();
        st = pvg_secagg_server_receive(c->sa, msg, len, err);
        c->cur.server_seconds += mono_real() - t0;
        if (st == PVG_OK) {
            cl->submitted = 1;
            c->arrived++;
            c->last_arrival = now_of(c);
            c->cur.last_message_seconds[c->phase - 1] = c->last_arrival - c->phase_started;
            if (c->arrived == quorum_of(c))
                c->cur.quorum_seconds[c->phase - 1] = c->last_arrival - c->phase_started;
            c->cur.bytes_in += len;
            if (c->arrived >= c->expected || c->arrived == quorum_of(c))
                pthread_cond_broadcast(&c->wake);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

pvg_status pvg_fl_coord_broadcast(pvg_fl_coord *c, uint64_t round, uint8_t **out, size_t *out_len,
                                  pvg_error *err)
{
    *out = NULL;
    *out_len = 0;
    pvg_fl_broadcast_ref *ref;
    const uint8_t *data;
    size_t len;
    pvg_status st = pvg_fl_coord_broadcast_ref(c, round, &ref, &data, &len, err);
    if (st != PVG_OK) return st;
    *out = malloc(len ? len : 1);
    if (*out) {
        if (len) memcpy(*out, data, len);
        *out_len = len;
    } else {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fl: broadcast");
    }
    pvg_fl_broadcast_ref_free(ref);
    return st;
}

pvg_status pvg_fl_coord_broadcast_ref(pvg_fl_coord *c, uint64_t round, pvg_fl_broadcast_ref **ref,
                                      const uint8_t **data, size_t *len, pvg_error *err)
{
    pvg_error_clear(err);
    *ref = NULL;
    *data = NULL;
    *len = 0;
    pthread_mutex_lock(&c->mu);
    pvg_status st = PVG_OK;
    int in_round = c->phase >= PVG_FL_PHASE_ADVERTISE && c->phase <= PVG_FL_PHASE_UNMASK;
    if (!in_round || round != c->round) {
        st = pvg_error_set(
            err, PVG_ERR_NOT_FOUND, "fl: round %llu is not under way (current %llu, %s)",
            (unsigned long long)round, (unsigned long long)c->round, pvg_fl_phase_name(c->phase));
    } else {
        atomic_fetch_add(&c->bref->refs, 1);
        *ref = c->bref;
        *data = c->bref->p;
        *len = c->bref->len;
        c->cur.bytes_out += c->bref->len;
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

pvg_status pvg_fl_coord_wait(pvg_fl_coord *c, uint64_t round, double timeout_s,
                             pvg_fl_round_stats *st, pvg_error *err)
{
    pvg_error_clear(err);
    struct timespec ts = mono_in(timeout_s);
    pthread_mutex_lock(&c->mu);
    pvg_status r = PVG_OK;
    for (;;) {
        if (c->have_last && c->last.round == round) {
            if (st) *st = c->last;
            break;
        }
        if (c->have_last && c->last.round > round) {
            r = pvg_error_set(err, PVG_ERR_NOT_FOUND, "fl: round %llu ended before the last kept",
                              (unsigned long long)round);
            break;
        }
        if (c->phase == PVG_FL_PHASE_FINISHED) {
            r = pvg_error_set(err, PVG_ERR_NOT_FOUND,
                              "fl: the coordinator finished before round %llu",
                              (unsigned long long)round);
            break;
        }
        if (pthread_cond_timedwait(&c->ended, &c->mu, &ts) == ETIMEDOUT) {
            if (c->have_last && c->last.round == round) continue;
            r = pvg_error_set(err, PVG_ERR_BUSY, "fl: round %llu did not end within %g s (%s)",
                              (unsigned long long)round, timeout_s, pvg_fl_phase_name(c->phase));
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return r;
}

pvg_status pvg_fl_coord_wait_told(pvg_fl_coord *c, double quiet_s, double timeout_s, uint32_t *told,
                                  uint32_t *waiting, pvg_error *err)
{
    pvg_error_clear(err);
    if (told) *told = 0;
    if (waiting) *waiting = 0;
    if (!(quiet_s >= 0) || !(timeout_s >= 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fl: quiet_s %g and timeout_s %g: both >= 0 were expected", quiet_s,
                             timeout_s);
    double until = mono_real() + timeout_s;
    pthread_mutex_lock(&c->mu);
    pvg_status r = PVG_OK;
    for (;;) {
        if (c->phase != PVG_FL_PHASE_FINISHED) {
            r = pvg_error_set(err, PVG_ERR_STATE, "fl: the coordinator has not finished (%s)",
                              pvg_fl_phase_name(c->phase));
            break;
        }
        /* a client still waited for: not told, and seen within quiet_s (it polls every
           retry_ms <= 1 s while it waits); the next time one of them turns quiet */
        double now = now_of(c), next_quiet = INFINITY;
        uint32_t n_told = 0, n_wait = 0;
        for (uint32_t i = 0; i < c->n_clients; i++) {
            const fl_client *cl = &c->clients[i];
            if (cl->told) {
                n_told++;
            } else if (cl->parked) { /* woken by the finished phase: told soon */
                n_wait++;
                if (now + quiet_s < next_quiet) next_quiet = now + quiet_s;
            } else if (now - cl->last_seen < quiet_s) {
                n_wait++;
                if (cl->last_seen + quiet_s < next_quiet) next_quiet = cl->last_seen + quiet_s;
            }
        }
        if (told) *told = n_told;
        if (waiting) *waiting = n_wait;
        if (n_wait == 0) break;
        double left = until - mono_real();
        if (left <= 0) {
            r = pvg_error_set(err, PVG_ERR_BUSY,
                              "fl: %u clients still polling were not told the coordinator "
                              "finished within %g s",
                              n_wait, timeout_s);
            break;
        }
        /* wake on a client told (the ended condition), when the next one turns quiet (on
           an injected clock at least every 50 ms), or at the timeout */
        double d = next_quiet - now;
        if (c->o.clock && d > 0.05) d = 0.05;
        if (d > left) d = left;
        if (d < 0.001) d = 0.001;
        struct timespec ts = mono_in(d);
        pthread_cond_timedwait(&c->ended, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return r;
}
