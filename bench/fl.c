/*
 * bench/fl.c - one round of federated training over HTTP on loopback with
 * real client processes: N (default 1,000) forked clients, each a shopper
 * with its own token and a synthetic history of 20 items, take part in one
 * round of federated iALS (32 factors) through SecAgg+ (k and t from the
 * coordinator's default plan, pvg_secagg_plan_params: 30% dropout, 5%
 * corrupt, sigma 40, eta 20; k = 174, t = 88 at n = 1,000);
 * a fraction (default 30%) drops, each in a random phase (advertise, share,
 * masked input, unmask). The server (libmicrohttpd, the coordinator and the
 * model) runs in this process.
 *
 * Prints JSON: the round's wall seconds and per-phase seconds (phases with a
 * dropout end at their deadline), the seconds after the last phase (the
 * unmasking and the model's update) and of the model's update alone
 * (apply_seconds), the server's CPU-bound seconds, client
 * compute seconds (p50, max) and wall seconds, HTTP bytes up and down per
 * surviving client (bodies and headers) against the plain quantised update
 * (d words of 4 bytes), the machine's load average.
 *
 * A phase closes when every expected message is in, at its deadline, or once
 * max(t, survivor floor) messages are in and none came for the grace (a
 * dropout that stopped mid-round does not hold every phase to its deadline).
 *
 * The clients long-poll the round's STATE (GET /v1/fl/state?wait=..., the
 * server answers on a change of round or phase); with the seventh argument
 * "plain" they poll at the retry_ms the server gives instead (the protocol
 * before long polling), for a side-by-side comparison. The server process's
 * CPU seconds (all its threads: HTTP workers, coordinator; the clients are
 * other processes) are reported from the last join to the round's end.
 *
 * The eighth and ninth arguments choose the SecAgg lane and mask PRG
 * (pvg_fl_coord_options lane_bits, mask_rounds): "32 8" (the default, as
 * fl serve's) is the 32-bit lane with ChaCha8 masks, "32 20" the same with
 * ChaCha20; "16 12" a 16-bit lane (the model's
 * update encoded mod 2^16, pvg_fl_config bits = 16, with the expected
 * cohort set to the number of clients so that the encoding's wrap bound
 * covers their sum) with ChaCha12 masks. The JSON gives the upload against
 * the plain update of 32-bit words (plain_update_bytes, upload_ratio) and
 * against the plain update at the lane's width (plain_lane_bytes,
 * lane_upload_ratio, lane_body_upload_ratio).
 *
 * The tenth argument, "ahead", has the clients add up their masks once they
 * have posted their SHARES (pvg_fl_client_options mask_ahead) instead of in
 * the masked phase ("late", the default).
 *
 * usage: bench_fl [clients [items [dropout [deadlines: S or A,B,C,D seconds
 *                 [grace seconds (default 2; 0: off) [k (default 0: the plan; else
 *                 the neighbours, t a majority) [long|plain (default long)
 *                 [lane bits 32|16 [mask rounds 8|12|20 [late|ahead]]]]]]]]]]
 */
#include <privguide/auth.h>
#include <privguide/fl.h>
#include <privguide/fl_net.h>
#include <privguide/rng.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct result {
    uint32_t index;
    int32_t status;
    int32_t drop_phase;
    uint32_t rounds;
    double compute_seconds, seconds, cpu_seconds;
    unsigned long long requests;
    unsigned long long bytes_up, bytes_down, body_up, body_down;
} result;

typedef struct child_ctx {
    uint32_t items[20];
    float w[20];
    size_t n;
    pvg_rng *rng;
} child_ctx;

static pvg_status child_update(void *ctx, uint64_t round, const uint8_t *bc, size_t len,
                               uint32_t *vec, size_t d, pvg_error *err)
{
    child_ctx *c = ctx;
    (void)round;
    float factor[32];
    return pvg_fl_client_update(bc, len, c->items, c->w, c->n, c->rng, vec, d, factor, err);
}

static void child(uint32_t index, const char *token, int drop, uint32_t n_items, int plain,
                  int ahead, int port_fd, int res_fd)
{
    int port = 0;
    if (read(port_fd, &port, sizeof port) != sizeof port) _exit(3);
    child_ctx c;
    c.rng = pvg_rng_new_secure();
    c.n = 20;
    for (size_t i = 0; i < c.n; i++) {
        c.items[i] = (uint32_t)pvg_rng_uniform(c.rng, n_items);
        c.w[i] = 1.0f;
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    pvg_fl_client_options o;
    memset(&o, 0, sizeof o);
    o.server = url;
    o.token = token;
    o.rounds = 1;
    o.timeout_s = 900;
    o.drop_phase = drop;
    o.update = child_update;
    o.ctx = &c;
    o.rng = c.rng;
    o.plain_poll = plain;
    o.mask_ahead = ahead;
    pvg_fl_client_stats st;
    pvg_error err;
    result r;
    memset(&r, 0, sizeof r);
    r.index = index;
    r.drop_phase = drop;
    r.status = pvg_fl_client_run(&o, &st, &err);
    if (r.status != PVG_OK) fprintf(stderr, "client %u: %s\n", index, err.text);
    r.rounds = st.rounds;
    r.compute_seconds = st.compute_seconds;
    r.seconds = st.seconds;
    r.bytes_up = st.bytes_up;
    r.bytes_down = st.bytes_down;
    r.body_up = st.body_up;
    r.body_down = st.body_down;
    r.requests = st.requests;
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    r.cpu_seconds = (double)cpu.tv_sec + (double)cpu.tv_nsec * 1e-9;
    if (write(res_fd, &r, sizeof r) != sizeof r) _exit(4);
    _exit(0);
}

typedef struct trainer {
    pvg_fl_model *m;
    pvg_rng *rng;
    double apply_seconds; /* the model's update from the unmasked sum */
} trainer;

static pvg_status tr_broadcast(void *ctx, uint64_t round, uint8_t **out, size_t *len,
                               pvg_error *err)
{
    (void)round;
    return pvg_fl_model_broadcast(((trainer *)ctx)->m, out, len, err);
}

static pvg_status tr_apply(void *ctx, uint64_t round, const uint32_t *sum, size_t d,
                           uint32_t survivors, pvg_error *err)
{
    trainer *t = ctx;
    (void)round;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pvg_status st = pvg_fl_model_apply(t->m, sum, d, survivors, t->rng, err);
    clock_gettime(CLOCK_MONOTONIC, &b);
    t->apply_seconds = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    return st;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    uint32_t n = argc > 1 ? (uint32_t)atoi(argv[1]) : 1000;
    uint32_t n_items = argc > 2 ? (uint32_t)atoi(argv[2]) : 4000;
    double dropout = argc > 3 ? atof(argv[3]) : 0.3;
    double def[4] = {15, 40, 60, 15}; /* the deadlines; argv[4]: "a,b,c,d" or one for all */
    if (argc > 4) {
        int got = sscanf(argv[4], "%lf,%lf,%lf,%lf", &def[0], &def[1], &def[2], &def[3]);
        if (got == 1) def[1] = def[2] = def[3] = def[0];
    }
    double grace = argc > 5 ? atof(argv[5]) : 2;
    uint32_t kk = argc > 6 ? (uint32_t)atoi(argv[6]) : 0;
    const char *mode = argc > 7 ? argv[7] : "long";
    unsigned lane = argc > 8 ? (unsigned)atoi(argv[8]) : 32;
    unsigned rounds = argc > 9 ? (unsigned)atoi(argv[9]) : 8;
    const char *when = argc > 10 ? argv[10] : "late"; /* "ahead": mask_ahead */
    int ahead = strcmp(when, "ahead") == 0;
    int plain_poll = strcmp(mode, "plain") == 0;
    if (n < 3 || n_items < 1 || dropout < 0 || dropout >= 1 || grace < 0 || kk == 1 ||
        (!plain_poll && strcmp(mode, "long") != 0) || (lane != 16 && lane != 32) ||
        (rounds != 8 && rounds != 12 && rounds != 20) || (!ahead && strcmp(when, "late") != 0)) {
        fprintf(stderr, "usage: bench_fl [clients >= 3 [items [dropout [phase_seconds [grace "
                        "[k [long|plain [16|32 [8|12|20 [late|ahead]]]]]]]]]]\n");
        return 2;
    }
    char dir[] = "/tmp/pvg-bench-fl-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char dd[128], keyf[128];
    snprintf(dd, sizeof dd, "%s/data", dir);
    snprintf(keyf, sizeof keyf, "%s/keys", dir);
    setenv(PVG_ENV_KEY_FILE, keyf, 1);
    pvg_error err;
    pvg_store_init_options io;
    memset(&io, 0, sizeof io);
    io.key_file = keyf;
    pvg_store *s = NULL;
    if (pvg_store_init(dd, &io, &err) != PVG_OK || pvg_store_open(dd, &s, &err) != PVG_OK) {
        fprintf(stderr, "store: %s\n", err.text);
        return 1;
    }
    char **tok = calloc(n, sizeof *tok);
    for (uint32_t i = 0; i < n; i++) {
        char user[32];
        pvg_principal p;
        snprintf(user, sizeof user, "bench-shopper-%u", i);
        if (pvg_auth_token_issue(s, user, 86400, 0, &tok[i], &p, &err) != PVG_OK) {
            fprintf(stderr, "token: %s\n", err.text);
            return 1;
        }
    }
    pvg_store_free(s);

    /* dropouts: round(dropout * n) clients, the first four one per phase, the
     * others in a random phase */
    pvg_rng *rng = pvg_rng_new_secure();
    int *drop = calloc(n, sizeof *drop);
    uint32_t n_drop = (uint32_t)lround(dropout * n);
    for (uint32_t j = 0; j < n_drop; j++) {
        uint32_t i;
        do
            i = (uint32_t)pvg_rng_uniform(rng, n);
        while (drop[i]);
        drop[i] = j < 4 ? (int)j + 1 : 1 + (int)pvg_rng_uniform(rng, 4);
    }

    /* fork every client before any thread starts here */
    int port_pipe[2], res_pipe[2];
    if (pipe(port_pipe) != 0 || pipe(res_pipe) != 0) return 1;
    pid_t *pid = calloc(n, sizeof *pid);
    struct timespec tw0, tw1;
    clock_gettime(CLOCK_MONOTONIC, &tw0);
    for (uint32_t i = 0; i < n; i++) {
        pid[i] = fork();
        if (pid[i] == 0) {
            close(port_pipe[1]);
            close(res_pipe[0]);
            child(i, tok[i], drop[i], n_items, plain_poll, ahead, port_pipe[0], res_pipe[1]);
        }
        if (pid[i] < 0) {
            fprintf(stderr, "fork %u: %s (ran %u clients)\n", i, strerror(errno), i);
            return 1;
        }
    }
    close(port_pipe[0]);
    close(res_pipe[1]);
    struct timespec tf;
    clock_gettime(CLOCK_MONOTONIC, &tf);
    for (uint32_t i = 0; i < n; i++)
        pvg_auth_credential_free(tok[i]);
    free(tok);

    pvg_fl_config cfg;
    pvg_fl_config_default(&cfg);
    cfg.factors = 32;
    if (lane == 16) {
        /* the update mod 2^16 with its wrap bound over the whole cohort: after the
           rotation (blocks of 4,096) a coordinate of one client's update is
           sub-Gaussian with scale C/64 in steps, the n clients' (same rotation) at
           most n C/64; 8 of those plus n for the rounding fit half the modulus.
           The automatic granularity (fl_code_of) also counts the rounding's norm
           (sqrt(d)/2) in that scale and finds no step for n = 1,000 at this d, so
           the step is given here. The timing does not depend on it; the quality of
           16-bit updates is bench/fl_quality.c's to measure. */
        cfg.bits = 16;
        cfg.expected_cohort = n;
        double cint = floor((32768.0 - n) * 64.0 / (8.0 * n));
        if (cint > 8192) cint = 8192; /* fl_code_of's cap: a quarter of the modulus */
        cfg.granularity = cfg.clip / cint;
    }
    trainer tr = {NULL, rng, 0};
    if (pvg_fl_model_new(&cfg, n_items, rng, &tr.m, &err) != PVG_OK) {
        fprintf(stderr, "model: %s\n", err.text);
        return 1;
    }
    size_t d = pvg_fl_update_dim(&cfg, n_items);
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = (uint32_t)d;
    co.sample_rate = 1.0;
    co.min_clients = n;
    co.k = kk; /* 0: the coordinator's plan for the cohort */
    co.phase_grace = grace;
    co.max_rounds = 1;
    co.server_threads = 2;
    co.lane_bits = lane;
    co.mask_rounds = rounds;
    /* deadlines: the share phase carries the clients' updates, the masked-input
     * phase their mask expansion */
    for (int i = 0; i < 4; i++)
        co.phase_seconds[i] = def[i];
    co.broadcast = tr_broadcast;
    co.apply = tr_apply;
    co.ctx = &tr;
    co.rng = rng;
    pvg_fl_coord *coord = NULL;
    if (pvg_fl_coord_new(&co, &coord, &err) != PVG_OK) {
        fprintf(stderr, "coordinator: %s\n", err.text);
        return 1;
    }
    pvg_server_options so;
    memset(&so, 0, sizeof so);
    so.data_dir = dd;
    so.threads = 4;
    so.monitor_off = 1;
    so.synonyms_path = "";
    so.auth_failure_rate = -1;
    so.fl = coord;
    so.max_body_bytes = pvg_fl_coord_max_message(coord) + 4096;
    pvg_server *srv = NULL;
    if (pvg_server_start(&so, &srv, &err) != PVG_OK) {
        fprintf(stderr, "server: %s\n", err.text);
        return 1;
    }
    int port = pvg_server_port(srv);
    struct timespec ts_srv, ts_joined;
    clock_gettime(CLOCK_MONOTONIC, &ts_srv);
    for (uint32_t i = 0; i < n; i++)
        if (write(port_pipe[1], &port, sizeof port) != sizeof port) return 1;
    close(port_pipe[1]);
    for (int i = 0; i < 40000 && pvg_fl_coord_registered(coord) < n; i++) {
        struct timespec nap = {0, 10000000L};
        nanosleep(&nap, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &ts_joined);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
#define SEC(a, b) ((double)((b).tv_sec - (a).tv_sec) + (double)((b).tv_nsec - (a).tv_nsec) * 1e-9)

    pvg_fl_round_stats rs;
    pvg_status st = pvg_fl_coord_wait(coord, 1, 900, &rs, &err);
    clock_gettime(CLOCK_MONOTONIC, &tw1);
    getrusage(RUSAGE_SELF, &ru1);
#define TV(t) ((double)(t).tv_sec + (double)(t).tv_usec * 1e-6)
    double server_cpu = TV(ru1.ru_utime) + TV(ru1.ru_stime) - TV(ru0.ru_utime) - TV(ru0.ru_stime);
    double wall = (double)(tw1.tv_sec - tw0.tv_sec) + (double)(tw1.tv_nsec - tw0.tv_nsec) * 1e-9;
    if (st != PVG_OK)
        fprintf(stderr, "round 1: %s (registered %u of %u)\n", err.text,
                pvg_fl_coord_registered(coord), n);
    result *res = calloc(n, sizeof *res);
    uint32_t got = 0;
    while (got < n) {
        ssize_t r = read(res_pipe[0], &res[got], sizeof *res);
        if (r != (ssize_t)sizeof *res) break;
        got++;
    }
    for (uint32_t i = 0; i < n; i++)
        waitpid(pid[i], NULL, 0);
    double *cs = calloc(n, sizeof *cs), *ws = calloc(n, sizeof *ws), *cpu = calloc(n, sizeof *cpu);
    double cpu_all = 0, req_all = 0;
    double up = 0, down = 0, bup = 0, bdown = 0;
    uint32_t m = 0, failed = 0, done = 0;
    for (uint32_t i = 0; i < got; i++) {
        if (res[i].status != 0) failed++;
        cpu_all += res[i].cpu_seconds;
        req_all += (double)res[i].requests;
        if (res[i].drop_phase) continue;
        cpu[m] = res[i].cpu_seconds;
        cs[m] = res[i].compute_seconds;
        ws[m] = res[i].seconds;
        up += (double)res[i].bytes_up;
        down += (double)res[i].bytes_down;
        bup += (double)res[i].body_up;
        bdown += (double)res[i].body_down;
        done += res[i].rounds;
        m++;
    }
    qsort(cs, m, sizeof *cs, cmp_d);
    qsort(ws, m, sizeof *ws, cmp_d);
    qsort(cpu, m, sizeof *cpu, cmp_d);
    double la[3] = {0, 0, 0};
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (fscanf(lf, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3) la[0] = -1;
        fclose(lf);
    }
    double plain = (double)d * 4, plain_lane = (double)d * lane / 8;
    printf("{\"bench\":\"fl\",\"poll\":\"%s\",\"masks\":\"%s\",\"server_cpu_seconds\":%.3f,"
           "\"clients\":%u,\"items\":%u,\"factors\":%u,\"d\":%zu,"
           "\"dropout\":%.2f,\"k\":%u,\"t\":%u,\"round\":\"%s\",\"error\":\"%s\","
           "\"survivors\":%u,\"arrived\":[%u,%u,%u,%u],"
           "\"fork_seconds\":%.3f,\"server_start_seconds\":%.3f,\"join_seconds\":%.3f,"
           "\"wall_seconds_from_fork\":%.3f,\"round_seconds\":%.3f,"
           "\"phase_seconds\":[%.3f,%.3f,%.3f,%.3f],"
           "\"quorum_seconds\":[%.3f,%.3f,%.3f,%.3f],"
           "\"last_message_seconds\":[%.3f,%.3f,%.3f,%.3f],\"after_phases_seconds\":%.3f,"
           "\"apply_seconds\":%.3f,"
           "\"deadlines\":[%.0f,%.0f,%.0f,%.0f],\"grace\":%.2f,\"server_seconds\":%.3f,"
           "\"client_compute_seconds_p50\":%.4f,\"client_compute_seconds_max\":%.4f,"
           "\"client_wall_seconds_p50\":%.3f,\"client_wall_seconds_max\":%.3f,"
           "\"client_cpu_seconds_p50\":%.4f,\"client_cpu_seconds_max\":%.4f,"
           "\"clients_cpu_seconds_total\":%.2f,\"requests_per_client\":%.1f,"
           "\"bytes_up_per_client\":%.0f,\"bytes_down_per_client\":%.0f,"
           "\"body_up_per_client\":%.0f,\"body_down_per_client\":%.0f,"
           "\"plain_update_bytes\":%.0f,\"upload_ratio\":%.4f,\"body_upload_ratio\":%.4f,"
           "\"lane_bits\":%u,\"mask_rounds\":%u,\"model_bits\":%u,\"model_clip_steps\":%.0f,"
           "\"plain_lane_bytes\":%.0f,"
           "\"lane_upload_ratio\":%.4f,\"lane_body_upload_ratio\":%.4f,"
           "\"clients_reporting\":%u,\"clients_failed\":%u,\"clients_done\":%u,"
           "\"loadavg\":[%.2f,%.2f,%.2f],\"cores\":%ld}\n",
           mode, when, server_cpu, n, n_items, cfg.factors, d, dropout, rs.k, rs.t,
           st == PVG_OK ? pvg_fl_phase_name(rs.phase) : "timeout",
           st == PVG_OK ? rs.error : err.text, rs.survivors, rs.arrived[0], rs.arrived[1],
           rs.arrived[2], rs.arrived[3], SEC(tw0, tf), SEC(tf, ts_srv), SEC(ts_srv, ts_joined),
           wall, rs.seconds, rs.phase_seconds[0], rs.phase_seconds[1], rs.phase_seconds[2],
           rs.phase_seconds[3], rs.quorum_seconds[0], rs.quorum_seconds[1], rs.quorum_seconds[2],
           rs.quorum_seconds[3], rs.last_message_seconds[0], rs.last_message_seconds[1],
           rs.last_message_seconds[2], rs.last_message_seconds[3],
           rs.seconds - rs.phase_seconds[0] - rs.phase_seconds[1] - rs.phase_seconds[2] -
               rs.phase_seconds[3],
           tr.apply_seconds, co.phase_seconds[0], co.phase_seconds[1], co.phase_seconds[2],
           co.phase_seconds[3], grace, rs.server_seconds, m ? cs[m / 2] : 0, m ? cs[m - 1] : 0,
           m ? ws[m / 2] : 0, m ? ws[m - 1] : 0, m ? cpu[m / 2] : 0, m ? cpu[m - 1] : 0, cpu_all,
           got ? req_all / got : 0, m ? up / m : 0, m ? down / m : 0, m ? bup / m : 0,
           m ? bdown / m : 0, plain, m ? up / m / plain : 0, m ? bup / m / plain : 0, lane, rounds,
           cfg.bits, cfg.granularity > 0 ? cfg.clip / cfg.granularity : 0, plain_lane,
           m ? up / m / plain_lane : 0, m ? bup / m / plain_lane : 0, got, failed, done, la[0],
           la[1], la[2], sysconf(_SC_NPROCESSORS_ONLN));
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);
    pvg_fl_model_free(tr.m);
    pvg_rng_free(rng);
    free(res);
    free(cs);
    free(ws);
    free(cpu);
    free(pid);
    free(drop);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return st == PVG_OK && rs.phase == PVG_FL_PHASE_DONE ? 0 : 1;
}
