/*
 * test_fl_limits.c - the limits of federated training's transport:
 *
 * - the registry never takes more clients than a round can hold: at
 *   sampling rate 1 the 65,536th join is refused (SecAgg's wire limit is
 *   65,535 per cohort; the registry used to take 100,000 and a larger cohort
 *   was resampled forever), and a coordinator whose minimums exceed the
 *   capacity is refused at creation;
 * - registrations expire: a client not seen for expire_seconds is dropped
 *   (an injected clock, no sleeps) and may join again;
 * - a phase with a silent client closes after the grace once its quorum is
 *   in, instead of at its deadline, and the round's sum is the survivors';
 * - a finished coordinator tells every client still polling that it
 *   finished before its server may stop (pvg_fl_coord_wait_told): `fl
 *   serve` used to exit right after its last round, and a client that polled
 *   a moment later found the server gone and failed; a client that left
 *   (silent for quiet_s) is not waited for;
 * - the client reads no answer past the largest legal one: an oversized
 *   STATE, an announced broadcast beyond the session's shape, a broadcast
 *   longer than announced and a long error body each stop the client with
 *   the byte offset (a fake server that sends too much).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <privguide/fl_net.h>
#include <privguide/rng.h>
#include <privguide/secagg.h>
#include <privguide/store.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void key_of(uint32_t i, uint8_t key[PVG_FL_NET_KEY_BYTES])
{
    memset(key, 0, PVG_FL_NET_KEY_BYTES);
    for (int j = 0; j < 4; j++)
        key[j] = (uint8_t)(i >> (8 * j));
    key[31] = 0x5a;
}

/* ---- registry capacity ---- */

static void test_registry_capacity(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord_options o;
    memset(&o, 0, sizeof o);
    o.d = 16;
    o.sample_rate = 1.0;
    o.min_clients = 3;
    o.start_delay = 86400; /* no round starts: this test fills the registry only */
    o.rng = rng;
    pvg_fl_coord *c = NULL;
    pvg_error err;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_OK);
    assert_int_equal(pvg_fl_coord_capacity(c), PVG_SECAGG_MAX_CLIENTS);
    uint8_t key[PVG_FL_NET_KEY_BYTES];
    for (uint32_t i = 0; i < PVG_SECAGG_MAX_CLIENTS; i++) {
        key_of(i, key);
        if (pvg_fl_coord_join(c, key, &err) != PVG_OK) fail_msg("join %u: %s", i, err.text);
    }
    key_of(7, key); /* joining again is idempotent, also when full */
    assert_int_equal(pvg_fl_coord_join(c, key, &err), PVG_OK);
    key_of(PVG_SECAGG_MAX_CLIENTS, key);
    assert_int_equal(pvg_fl_coord_join(c, key, &err), PVG_ERR_BUSY);
    assert_non_null(strstr(err.text, "65535"));
    assert_int_equal(pvg_fl_coord_registered(c), PVG_SECAGG_MAX_CLIENTS);
    pvg_fl_coord_free(c);

    /* at lower rates the registry takes more, up to PVG_FL_NET_MAX_REGISTERED, and never so
       many that the expected cohort plus 10 standard deviations passes the limit */
    o.sample_rate = 0.9;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_OK);
    uint32_t cap = pvg_fl_coord_capacity(c);
    double q = 0.9, mean = cap * q, sd = sqrt(cap * q * (1 - q));
    assert_true(cap > PVG_SECAGG_MAX_CLIENTS && cap < PVG_FL_NET_MAX_REGISTERED);
    assert_true(mean + 10 * sd <= PVG_SECAGG_MAX_CLIENTS);
    assert_true((cap + 1) * q + 10 * sqrt((cap + 1) * q * (1 - q)) > PVG_SECAGG_MAX_CLIENTS);
    pvg_fl_coord_free(c);
    o.sample_rate = 0.5;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_OK);
    assert_int_equal(pvg_fl_coord_capacity(c), PVG_FL_NET_MAX_REGISTERED);
    pvg_fl_coord_free(c);

    /* a start condition no registry can meet is refused at creation */
    o.sample_rate = 1.0;
    o.min_clients = PVG_SECAGG_MAX_CLIENTS + 1;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "min_clients"));
    assert_null(c);
    pvg_rng_free(rng);
}

/* The cohort ceiling: a round never sums more clients than the update's
 * encoding leaves room for (a 16-bit lane's sum would wrap silently), so the
 * registry is bounded by max_cohort as by SecAgg's limit. */
/* A coordinator given the training config refuses one whose lane cannot
 * hold the sum of its cohort limit's clipped, noised updates (naming the
 * field), a lane or dimension that is not the config's, and takes the
 * config pvg_fl_config_for_cohort sets for that limit. Without a max_cohort
 * the limit is SecAgg's 65,535, which the default config's step (chosen for
 * an expected cohort of 100) does not hold at 32 bits. */
static void test_coord_checks_the_lane(void **state)
{
    (void)state;
    const uint32_t n_items = 50;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_config cfg;
    pvg_fl_config_default(&cfg);
    cfg.factors = 4;
    pvg_fl_coord_options o;
    memset(&o, 0, sizeof o);
    o.d = (uint32_t)pvg_fl_update_dim(&cfg, n_items);
    o.sample_rate = 1.0;
    o.min_clients = 3;
    o.min_survivors = 3;
    o.start_delay = 86400;
    o.rng = rng;
    o.fl_config = &cfg;
    o.fl_items = n_items;
    pvg_fl_coord *c = NULL;
    pvg_error err;
    /* 32 bits, no DP, no max_cohort: 65,535 clients would wrap the default's step */
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "max_cohort");
    assert_non_null(strstr(err.text, "65535"));
    o.max_cohort = 100; /* what the default's step holds */
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_OK);
    pvg_fl_coord_free(c);
    o.max_cohort = 0;
    assert_int_equal(pvg_fl_config_for_cohort(&cfg, n_items, 32, PVG_SECAGG_MAX_CLIENTS, 3, &err),
                     PVG_OK);
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_OK);
    pvg_fl_coord_free(c);

    /* 16 bits with distributed DP: the step for 20 clients, not for 200 */
    cfg.dp = PVG_FL_DP_DISTRIBUTED;
    cfg.noise_multiplier = 1.0;
    cfg.clip = 1.0;
    cfg.granularity = 0;
    assert_int_equal(pvg_fl_config_for_cohort(&cfg, n_items, 16, 20, 3, &err), PVG_OK);
    o.lane_bits = 16;
    o.max_cohort = 20;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_OK);
    pvg_fl_coord_free(c);
    o.max_cohort = 200;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "max_cohort");
    assert_non_null(strstr(err.text, "16-bit lane cannot hold"));
    o.max_cohort = 20;
    o.min_survivors = 2; /* below the floor the noise is split over */
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "min_survivors");
    o.min_survivors = 3;
    o.lane_bits = 32; /* a lane wider than the encoding */
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "lane_bits");
    o.lane_bits = 16;
    o.d += 1;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_ERR_INVALID);
    assert_string_equal(err.source, "d");
    pvg_rng_free(rng);
}

static void test_registry_bounded_by_max_cohort(void **state)
{
    (void)state;
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord_options o;
    memset(&o, 0, sizeof o);
    o.d = 16;
    o.sample_rate = 1.0;
    o.min_clients = 3;
    o.max_cohort = 5;
    o.start_delay = 86400; /* no round starts: this test fills the registry only */
    o.rng = rng;
    pvg_fl_coord *c = NULL;
    pvg_error err;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_OK);
    assert_int_equal(pvg_fl_coord_capacity(c), 5);
    uint8_t key[PVG_FL_NET_KEY_BYTES];
    for (uint32_t i = 0; i < 5; i++) {
        key_of(i, key);
        if (pvg_fl_coord_join(c, key, &err) != PVG_OK) fail_msg("join %u: %s", i, err.text);
    }
    key_of(5, key);
    assert_int_equal(pvg_fl_coord_join(c, key, &err), PVG_ERR_BUSY);
    assert_int_equal(pvg_fl_coord_registered(c), 5);
    pvg_fl_coord_free(c);
    /* at q = 1/2: N / 2 + 10 sqrt(N / 4) <= 300 for N = 400, not 401 */
    o.sample_rate = 0.5;
    o.max_cohort = 300;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_OK);
    assert_int_equal(pvg_fl_coord_capacity(c), 400);
    pvg_fl_coord_free(c);
    /* a ceiling below a cohort's minimum, or above SecAgg's limit, is refused */
    o.sample_rate = 1.0;
    o.max_cohort = 2;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "max_cohort"));
    o.max_cohort = PVG_SECAGG_MAX_CLIENTS + 1;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_ERR_INVALID);
    o.max_cohort = 4;
    o.min_clients = 5;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_ERR_INVALID);
    assert_null(c);
    pvg_rng_free(rng);
}

/* ---- expiry, on an injected clock ---- */

static _Atomic double g_now;

static double fake_clock(void *ctx)
{
    (void)ctx;
    return atomic_load(&g_now);
}

/* Options of a coordinator at sampling rate 1 on the injected clock. */
static void clocked_options(pvg_fl_coord_options *o, uint32_t d, uint32_t min_clients, pvg_rng *rng)
{
    memset(o, 0, sizeof *o);
    o->d = d;
    o->sample_rate = 1.0;
    o->min_clients = min_clients;
    o->clock = fake_clock;
    o->rng = rng;
}

static void test_registrations_expire(void **state)
{
    (void)state;
    atomic_store(&g_now, 1000.0);
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord_options o;
    clocked_options(&o, 16, 1000, rng); /* no round: expiry between rounds only */
    o.expire_seconds = 10;
    pvg_fl_coord *c = NULL;
    pvg_error err;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_OK);
    uint8_t a[PVG_FL_NET_KEY_BYTES], b[PVG_FL_NET_KEY_BYTES];
    key_of(1, a);
    key_of(2, b);
    assert_int_equal(pvg_fl_coord_join(c, a, &err), PVG_OK);
    assert_int_equal(pvg_fl_coord_join(c, b, &err), PVG_OK);
    assert_int_equal(pvg_fl_coord_registered(c), 2);

    uint8_t *st = NULL;
    size_t len = 0;
    atomic_store(&g_now, 1006.0); /* a asks for its state: seen at 1006 */
    assert_int_equal(pvg_fl_coord_state(c, a, &st, &len, &err), PVG_OK);
    free(st);
    atomic_store(&g_now, 1010.0); /* exactly 10 s: not yet expired */
    assert_int_equal(pvg_fl_coord_registered(c), 2);
    atomic_store(&g_now, 1011.0); /* b was last seen 11 s ago */
    assert_int_equal(pvg_fl_coord_registered(c), 1);
    assert_int_equal(pvg_fl_coord_state(c, b, &st, &len, &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_fl_coord_state(c, a, &st, &len, &err), PVG_OK); /* seen at 1011 */
    free(st);
    atomic_store(&g_now, 1021.5);
    assert_int_equal(pvg_fl_coord_registered(c), 0);
    /* an expired client joins again */
    assert_int_equal(pvg_fl_coord_join(c, b, &err), PVG_OK);
    assert_int_equal(pvg_fl_coord_registered(c), 1);
    assert_int_equal(pvg_fl_coord_state(c, b, &st, &len, &err), PVG_OK);
    free(st);
    pvg_fl_coord_free(c);
    pvg_rng_free(rng);
}

/* ---- the grace: a silent client does not hold a phase to its deadline ---- */

#define GN 5
#define GD 8

typedef struct grace_ctx {
    uint32_t sum[GD];
    uint32_t survivors;
    int applied;
} grace_ctx;

static pvg_status grace_apply(void *ctx, uint64_t round, const uint32_t *sum, size_t d,
                              uint32_t survivors, pvg_error *err)
{
    (void)round;
    (void)err;
    grace_ctx *g = ctx;
    memcpy(g->sum, sum, sizeof(uint32_t) * d);
    g->survivors = survivors;
    g->applied = 1;
    return PVG_OK;
}

static int state_of(pvg_fl_coord *c, const uint8_t *key, uint8_t **buf, pvg_fl_state *fs)
{
    size_t len = 0;
    pvg_error err;
    free(*buf);
    *buf = NULL;
    if (pvg_fl_coord_state(c, key, buf, &len, &err) != PVG_OK) return -1;
    return pvg_fl_state_parse(*buf, len, fs, &err) == PVG_OK ? 0 : -1;
}

/* Polls client 0's STATE until the phase is `phase` (at most 60 s). */
static void wait_phase(pvg_fl_coord *c, const uint8_t *key, int phase)
{
    uint8_t *buf = NULL;
    pvg_fl_state fs;
    for (int i = 0; i < 6000; i++) {
        assert_int_equal(state_of(c, key, &buf, &fs), 0);
        if (fs.phase == phase) {
            free(buf);
            return;
        }
        nap_ms(10);
    }
    free(buf);
    fail_msg("phase %d not reached within 60 s (at %d)", phase, fs.phase);
}

static void test_grace_closes_a_phase(void **state)
{
    (void)state;
    atomic_store(&g_now, 5000.0);
    pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(14);
    pvg_rng *prng = pvg_rng_new_INSECURE_deterministic_for_tests(15); /* the peers' */
    grace_ctx g;
    memset(&g, 0, sizeof g);
    pvg_fl_coord_options o;
    clocked_options(&o, GD, GN, rng);
    o.max_rounds = 1;
    for (int i = 0; i < 4; i++)
        o.phase_seconds[i] = 3600; /* on the injected clock: never reached here */
    o.phase_grace = 2;
    o.apply = grace_apply;
    o.ctx = &g;
    o.allow_insecure_rng = 1;
    pvg_fl_coord *c = NULL;
    pvg_error err;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_OK);
    uint8_t key[GN][PVG_FL_NET_KEY_BYTES];
    for (uint32_t i = 0; i < GN; i++) {
        key_of(100 + i, key[i]);
        assert_int_equal(pvg_fl_coord_join(c, key[i], &err), PVG_OK);
    }
    wait_phase(c, key[0], PVG_FL_PHASE_ADVERTISE);

    /* every client but the silent one (cohort id GN - 1) takes part */
    pvg_fl_peer *peer[GN] = {0};
    uint32_t id_of[GN];
    uint8_t *buf = NULL;
    pvg_fl_state fs;
    for (uint32_t i = 0; i < GN; i++) {
        assert_int_equal(state_of(c, key[i], &buf, &fs), 0);
        assert_int_equal(fs.phase, PVG_FL_PHASE_ADVERTISE);
        id_of[i] = fs.id;
        assert_int_equal(fs.params.k, GN - 1);
        if (fs.id == GN - 1) continue;
        uint32_t vec[GD];
        for (int j = 0; j < GD; j++)
            vec[j] = (fs.id + 1) * 1000u + (uint32_t)j;
        assert_int_equal(pvg_fl_peer_new(&fs, vec, GD, prng, 1, &peer[i], &err), PVG_OK);
    }
    int expect_phase = PVG_FL_PHASE_ADVERTISE;
    for (int round_phase = 0; round_phase < 4; round_phase++) {
        for (uint32_t i = 0; i < GN; i++) {
            if (!peer[i]) continue;
            assert_int_equal(state_of(c, key[i], &buf, &fs), 0);
            assert_int_equal(fs.phase, expect_phase);
            uint8_t *msg = NULL;
            size_t ml = 0;
            if (pvg_fl_peer_step(peer[i], &fs, &msg, &ml, &err) != PVG_OK)
                fail_msg("peer %u: %s", i, err.text);
            assert_non_null(msg);
            if (pvg_fl_coord_submit(c, key[i], msg, ml, &err) != PVG_OK)
                fail_msg("submit %u: %s", i, err.text);
            pvg_free(msg);
        }
        if (expect_phase == PVG_FL_PHASE_ADVERTISE) {
            /* 4 of 5 are in (t = 3): nothing closes until the clock passes the grace, and the
               deadline is an hour away; the old coordinator waited for it */
            atomic_store(&g_now, 5000.0 + o.phase_grace + 0.5);
            uint32_t live = 0;
            for (uint32_t i = 0; i < GN; i++)
                if (id_of[i] != GN - 1) {
                    live = i;
                    break;
                }
            wait_phase(c, key[live], PVG_FL_PHASE_SHARE);
        }
        expect_phase++;
        if (expect_phase > PVG_FL_PHASE_UNMASK) break;
        /* the later phases close as soon as the 4 live clients answered */
        for (uint32_t i = 0; i < GN; i++)
            if (peer[i]) {
                wait_phase(c, key[i], expect_phase);
                break;
            }
    }
    pvg_fl_round_stats rs;
    assert_int_equal(pvg_fl_coord_wait(c, 1, 60, &rs, &err), PVG_OK);
    assert_int_equal(rs.phase, PVG_FL_PHASE_DONE);
    assert_int_equal(rs.arrived[0], GN - 1);
    assert_int_equal(rs.survivors, GN - 1);
    assert_true(g.applied);
    for (int j = 0; j < GD; j++) {
        uint32_t want = 0;
        for (uint32_t id = 0; id + 1 < GN; id++)
            want += (id + 1) * 1000u + (uint32_t)j;
        assert_int_equal(g.sum[j], want);
    }
    free(buf);
    for (uint32_t i = 0; i < GN; i++)
        pvg_fl_peer_free(peer[i]);
    pvg_fl_coord_free(c);
    pvg_rng_free(rng);
    pvg_rng_free(prng);
}

/* ---- the last round: clients still polling are told before the server stops ---- */

typedef struct late_poll {
    pvg_fl_coord *c;
    const uint8_t *key;
    int phase;
} late_poll;

static void *late_poller(void *arg)
{
    late_poll *lp = arg;
    nap_ms(20);
    uint8_t *buf = NULL;
    pvg_fl_state fs;
    lp->phase = state_of(lp->c, lp->key, &buf, &fs) == 0 ? fs.phase : -1;
    free(buf);
    return NULL;
}

/* A client that only POSTs messages after the last round (409 each) is not
 * polling: fl serve does not wait for it to be told. */
static void test_junk_after_finish_is_not_polling(void **state)
{
    (void)state;
    atomic_store(&g_now, 9000.0);
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord_options o;
    clocked_options(&o, 8, 3, rng);
    o.max_rounds = 1;
    for (int i = 0; i < 4; i++)
        o.phase_seconds[i] = 1;
    pvg_fl_coord *c = NULL;
    pvg_error err;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_OK);
    uint8_t key[3][PVG_FL_NET_KEY_BYTES];
    for (uint32_t i = 0; i < 3; i++) {
        key_of(500 + i, key[i]);
        assert_int_equal(pvg_fl_coord_join(c, key[i], &err), PVG_OK);
    }
    wait_phase(c, key[0], PVG_FL_PHASE_ADVERTISE);
    atomic_store(&g_now, 9002.0);
    pvg_fl_round_stats rs;
    assert_int_equal(pvg_fl_coord_wait(c, 1, 60, &rs, &err), PVG_OK);
    uint32_t told, waiting;
    uint8_t junk[36] = {0};
    for (int i = 0; i < 5; i++) {
        atomic_store(&g_now, 9010.0 + i * 4);
        assert_int_equal(pvg_fl_coord_submit(c, key[0], junk, sizeof junk, &err), PVG_ERR_STATE);
        assert_int_equal(pvg_fl_coord_wait_told(c, 5, 0.01, &told, &waiting, &err), PVG_OK);
        assert_int_equal(waiting, 0);
    }
    pvg_fl_coord_free(c);
    pvg_rng_free(rng);
}

static void test_finished_is_told_before_stop(void **state)
{
    (void)state;
    atomic_store(&g_now, 7000.0);
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_coord_options o;
    clocked_options(&o, 8, 3, rng);
    o.max_rounds = 1;
    for (int i = 0; i < 4; i++)
        o.phase_seconds[i] = 1; /* on the injected clock */
    pvg_fl_coord *c = NULL;
    pvg_error err;
    assert_int_equal(pvg_fl_coord_new(&o, &c, &err), PVG_OK);
    uint8_t key[3][PVG_FL_NET_KEY_BYTES];
    for (uint32_t i = 0; i < 3; i++) {
        key_of(300 + i, key[i]);
        assert_int_equal(pvg_fl_coord_join(c, key[i], &err), PVG_OK);
    }
    uint32_t told = 99, waiting = 99;
    /* not finished yet: nothing to wait for */
    assert_int_equal(pvg_fl_coord_wait_told(c, 5, 0, &told, &waiting, &err), PVG_ERR_STATE);
    wait_phase(c, key[0], PVG_FL_PHASE_ADVERTISE);
    /* nobody advertises (every client refused): the deadline passes, the round aborts and it
       was the last */
    atomic_store(&g_now, 7002.0);
    pvg_fl_round_stats rs;
    assert_int_equal(pvg_fl_coord_wait(c, 1, 60, &rs, &err), PVG_OK);
    assert_int_equal(rs.phase, PVG_FL_PHASE_ABORTED);

    /* all three polled within the quiet time and none was told: the old `fl serve` stopped
       here, under them */
    assert_int_equal(pvg_fl_coord_wait_told(c, 5, 0.05, &told, &waiting, &err), PVG_ERR_BUSY);
    assert_int_equal(told, 0);
    assert_int_equal(waiting, 3);
    uint8_t *buf = NULL;
    pvg_fl_state fs;
    assert_int_equal(state_of(c, key[0], &buf, &fs), 0);
    assert_int_equal(fs.phase, PVG_FL_PHASE_FINISHED);
    assert_int_equal(fs.applied, 0);
    assert_int_equal(pvg_fl_coord_wait_told(c, 5, 0.05, &told, &waiting, &err), PVG_ERR_BUSY);
    assert_int_equal(told, 1);
    assert_int_equal(waiting, 2);
    /* client 1 is still about (seen at 7004); client 2 left after its last poll at 7000 and
       is quiet from 7005 on: the server waits for client 1 alone, and its poll from another
       thread wakes it */
    atomic_store(&g_now, 7004.0);
    assert_int_equal(pvg_fl_coord_join(c, key[1], &err), PVG_OK);
    atomic_store(&g_now, 7005.5);
    assert_int_equal(pvg_fl_coord_wait_told(c, 5, 0.01, &told, &waiting, &err), PVG_ERR_BUSY);
    assert_int_equal(waiting, 1);
    late_poll lp = {c, key[1], -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_poller, &lp), 0);
    assert_int_equal(pvg_fl_coord_wait_told(c, 5, 60, &told, &waiting, &err), PVG_OK);
    pthread_join(th, NULL);
    assert_int_equal(lp.phase, PVG_FL_PHASE_FINISHED);
    assert_int_equal(told, 2);
    assert_int_equal(waiting, 0);
    assert_int_equal(pvg_fl_coord_wait_told(c, -1, 1, &told, &waiting, &err), PVG_ERR_INVALID);
    free(buf);
    pvg_fl_coord_free(c);
    pvg_rng_free(rng);
}

/* ---- a server that sends too much ---- */

#define STATE_MAX_T ((size_t)80 + 4 * 65535 + 40 + 180 * (size_t)65535)

enum { BIG_STATE, BIG_ANNOUNCED, BIG_BROADCAST, BIG_ERROR, BIG_D };

static struct fake {
    int lfd, port, mode;
    atomic_int stop, broadcast_asked, posted;
    pthread_t th;
} F;

static void send_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return; /* the client stopped reading: expected */
        p += w;
        n -= (size_t)w;
    }
}

static void send_answer(int fd, int status, const uint8_t *body, size_t len)
{
    char h[160];
    int hl = snprintf(h, sizeof h,
                      "HTTP/1.1 %d X\r\nContent-Type: application/octet-stream\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      status, len);
    send_all(fd, (const uint8_t *)h, (size_t)hl);
    send_all(fd, body, len);
}

static size_t advertise_state(uint8_t *b, uint32_t broadcast_len, uint32_t d)
{
    memset(b, 0, 80);
    memcpy(b, "PVFL", 4);
    b[4] = 1;
    b[5] = 1;
    b[8] = 1;  /* round 1 */
    b[16] = 1; /* advertise */
    b[18] = 32;
    uint32_t f[] = {0, 3, 2, 2, d}; /* id, n, k, t, d */
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            b[20 + 4 * i + j] = (uint8_t)(f[i] >> (8 * j));
    memset(b + 40, 0x33, 16);
    uint32_t g[] = {60000, 5, broadcast_len};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++)
            b[56 + 4 * i + j] = (uint8_t)(g[i] >> (8 * j));
    return 80;
}

static void *fake_main(void *arg)
{
    (void)arg;
    size_t big = STATE_MAX_T + (1u << 20);
    uint8_t *junk = calloc(1, big);
    while (!atomic_load(&F.stop)) {
        struct pollfd p = {F.lfd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(F.lfd, NULL, NULL);
        if (fd < 0) continue;
        char req[8192];
        size_t n = 0;
        while (n < sizeof req - 1) { /* the request head and its body (small here) */
            ssize_t r = recv(fd, req + n, sizeof req - 1 - n, 0);
            if (r <= 0) break;
            n += (size_t)r;
            req[n] = 0;
            char *e = strstr(req, "\r\n\r\n");
            if (!e) continue;
            char *cl = strstr(req, "Content-Length: ");
            size_t want = cl ? (size_t)atol(cl + 16) : 0;
            if (n >= (size_t)(e + 4 - req) + want) break;
        }
        req[n] = 0;
        uint8_t st[80];
        if (F.mode == BIG_STATE) {
            memcpy(junk, st, advertise_state(st, 0, GD)); /* a valid head, then far too much */
            send_answer(fd, 200, junk, big);
        } else if (F.mode == BIG_ERROR) {
            send_answer(fd, 500, junk, (size_t)1 << 20);
        } else if (strncmp(req, "GET /v1/fl/broadcast", 20) == 0) {
            atomic_store(&F.broadcast_asked, 1);
            send_answer(fd, 200, junk, (size_t)5 << 20); /* 5 MiB, 1000 bytes announced */
        } else {
            if (strncmp(req, "POST /v1/fl/messages", 20) == 0) atomic_fetch_add(&F.posted, 1);
            size_t l = advertise_state(st, F.mode == BIG_ANNOUNCED ? 0x40000000u : 1000,
                                       F.mode == BIG_D ? (1u << 28) : GD);
            send_answer(fd, 200, st, l);
        }
        close(fd);
    }
    free(junk);
    return NULL;
}

static void fake_start(int mode)
{
    memset(&F, 0, sizeof F);
    F.mode = mode;
    F.lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(F.lfd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(F.lfd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t sl = sizeof a;
    assert_int_equal(getsockname(F.lfd, (struct sockaddr *)&a, &sl), 0);
    F.port = ntohs(a.sin_port);
    assert_int_equal(listen(F.lfd, 16), 0);
    assert_int_equal(pthread_create(&F.th, NULL, fake_main, NULL), 0);
}

static void fake_stop(void)
{
    atomic_store(&F.stop, 1);
    pthread_join(F.th, NULL);
    close(F.lfd);
}

static pvg_status never_update(void *ctx, uint64_t round, const uint8_t *bc, size_t len,
                               uint32_t *vec, size_t d, pvg_error *err)
{
    (void)ctx;
    (void)round;
    (void)bc;
    (void)len;
    (void)vec;
    (void)d;
    return pvg_error_set(err, PVG_ERR_INTERNAL, "the update must not be reached");
}

static pvg_status run_against_fake(int mode, pvg_error *err, pvg_fl_client_stats *out)
{
    fake_start(mode);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", F.port);
    pvg_rng *rng = pvg_rng_new_secure();
    pvg_fl_client_options o;
    memset(&o, 0, sizeof o);
    o.server = url;
    o.token = "fake-token";
    o.rounds = 1;
    o.timeout_s = mode == BIG_D ? 1 : 60; /* BIG_D: refused rounds until the timeout */
    o.max_d = 64;
    o.update = never_update;
    o.rng = rng;
    pvg_fl_client_stats st;
    pvg_status s = pvg_fl_client_run(&o, &st, err);
    fake_stop();
    pvg_rng_free(rng);
    /* nothing close to the oversized answers was taken in */
    assert_true(st.body_down < STATE_MAX_T + 65536);
    if (out) *out = st;
    return s;
}

static void test_client_reads_no_oversized_answer(void **state)
{
    (void)state;
    pvg_error err;
    assert_int_equal(run_against_fake(BIG_STATE, &err, NULL), PVG_ERR_INVALID);
    assert_int_equal(err.offset, (long long)STATE_MAX_T);
    assert_non_null(strstr(err.text, "/v1/fl/join"));

    assert_int_equal(run_against_fake(BIG_ERROR, &err, NULL), PVG_ERR_INVALID);
    assert_int_equal(err.offset, 65536);

    /* a STATE announcing a broadcast larger than any for d = 8 words: refused unfetched */
    assert_int_equal(run_against_fake(BIG_ANNOUNCED, &err, NULL), PVG_ERR_INVALID);
    assert_int_equal(err.offset, 64);
    assert_non_null(strstr(err.text, "broadcast_len"));
    assert_int_equal(atomic_load(&F.broadcast_asked), 0);

    /* 1000 bytes announced, 5 MiB sent: the client stops at byte 1000 */
    assert_int_equal(run_against_fake(BIG_BROADCAST, &err, NULL), PVG_ERR_INVALID);
    assert_int_equal(atomic_load(&F.broadcast_asked), 1);
    assert_int_equal(err.offset, 1000);
    assert_non_null(strstr(err.text, "/v1/fl/broadcast"));

    /* a session of 2^28 words (1 GiB a vector) to a client whose catalogue needs 64: the
       round is refused before anything is allocated or sent */
    pvg_fl_client_stats st;
    assert_int_equal(run_against_fake(BIG_D, &err, &st), PVG_ERR_BUSY);
    assert_true(st.refused >= 1);
    assert_int_equal(atomic_load(&F.posted), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_capacity),
        cmocka_unit_test(test_registry_bounded_by_max_cohort),
        cmocka_unit_test(test_coord_checks_the_lane),
        cmocka_unit_test(test_registrations_expire),
        cmocka_unit_test(test_grace_closes_a_phase),
        cmocka_unit_test(test_junk_after_finish_is_not_polling),
        cmocka_unit_test(test_finished_is_told_before_stop),
        cmocka_unit_test(test_client_reads_no_oversized_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
