/*
 * bench_fl_net_quality - the quality of federated iALS trained over HTTP by
 * real client processes, against the same run in process
 * (bench/fl_quality.c) and centralised iALS at the same factors.
 *
 * ML-100K (random-split 0.25, split seed 42; or Online Retail with
 * --dataset online-retail): every shopper of the training split is one
 * client with its own token. P forked processes run the clients in threads
 * (pvg_fl_client_run, the libcurl transport of `privguide fl client`), each
 * client computing its update on its own training items with
 * pvg_fl_client_update; the server (libmicrohttpd, the round coordinator,
 * SecAgg+ with the coordinator's planned k, the model) runs in this process.
 * The settings are bench_fl_quality's: reg and alpha0 from the training
 * data's degrees (pvg_ials_resolve_defaults), binary confidence, k = 32,
 * FedAvg on the gradient form at server_lr 0.5 without DP; with --eps E the
 * DP settings (the sufficient-statistics form, k = 16, clip 1, noise ridge 3,
 * distributed discrete Gaussian noise, delta 1/n^1.1, q = 1, noise
 * multiplier from pvg_fl_epsilon; --dp-average: the running mean of the
 * rounds' solves, average_solves). The item factors start from the same
 * generator seed as bench_fl_quality's run of that seed.
 *
 * After every round the server's published broadcast is kept; at the end
 * every evaluated user ranks the catalogue on device from it
 * (pvg_fl_client_recommend: its own factor solved from its training items,
 * training items excluded) and Recall@20 / NDCG@20 are computed against the
 * test split offline. The same configuration is then trained in process
 * (the plain modular sum in place of SecAgg) from the same seed for the
 * side-by-side figure.
 *
 *   bench_fl_net_quality [SHARED_DATA_DIR] [--dataset ml-100k|online-retail]
 *       [--rounds N] [--processes P] [--seed S] [--factors K] [--server-lr LR]
 *       [--eps E] [--dp-factors K] [--dp-ridge KAPPA] [--clip C]
 *       [--noise distributed|central] [--dp-average] [--phase-seconds S] [--validation]
 *       [--no-in-process] [--no-centralised] [--item-prior descriptions|categories]
 *
 * --item-prior (ML-100K, with --eps): the server's model (and the in-process
 * one) gets the public item prior as `fl serve --item-prior` builds it, from
 * each film's genre line "Action|Sci-Fi" as the declared description
 * (ml100k_catalogue_text): as text (pvg_fl_item_prior_from_titles) or as
 * category labels (pvg_fl_item_prior_from_labels), weight 1, count 20, each
 * item's PVG_FL_PRIOR_NEIGHBOURS nearest (docs/federated.md "A prior from
 * public item data").
 *
 * Exit 77 (skipped) when the data set is absent. JSON on stdout, progress
 * on stderr.
 */
#include "fl_quality_data.h"

#include <privguide/auth.h>
#include <privguide/fl.h>
#include <privguide/fl_net.h>
#include <privguide/rng.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include "fl/fl_internal.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 64

/* ---- the client processes ---- */

typedef struct client {
    uint32_t user;
    const uint32_t *items;
    const float *w;
    size_t n;
    const char *token;
    const char *url;
    uint32_t rounds;
    pvg_rng *rng;
    /* results */
    pvg_status status;
    pvg_fl_client_stats st;
    char err[PVG_ERROR_TEXT_LEN];
} client;

typedef struct result {
    uint32_t user;
    int32_t status;
    uint32_t rounds;
    double compute_seconds;
    unsigned long long bytes_up, bytes_down;
} result;

static pvg_status client_update(void *ctx, uint64_t round, const uint8_t *bc, size_t len,
                                uint32_t *vec, size_t d, pvg_error *err)
{
    client *c = ctx;
    (void)round;
    float x[PVG_FL_MAX_FACTORS];
    return pvg_fl_client_update(bc, len, c->items, c->w, c->n, c->rng, vec, d, x, err);
}

static void *client_thread(void *arg)
{
    client *c = arg;
    pvg_fl_client_options o;
    memset(&o, 0, sizeof o);
    o.server = c->url;
    o.token = c->token;
    o.rounds = c->rounds;
    o.timeout_s = 7200;
    o.update = client_update;
    o.ctx = c;
    o.rng = c->rng;
    pvg_error err;
    pvg_error_clear(&err);
    memset(&c->st, 0, sizeof c->st);
    c->status = pvg_fl_client_run(&o, &c->st, &err);
    snprintf(c->err, sizeof c->err, "%s", err.text);
    return NULL;
}

/* One forked process: its clients in threads; one result per client on res_fd. */
static void child_main(client *cl, uint32_t n, int port_fd, int res_fd)
{
    int port = 0;
    if (read(port_fd, &port, sizeof port) != sizeof port) _exit(3);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    pthread_t *th = calloc(n, sizeof *th);
    if (!th) _exit(4);
    for (uint32_t i = 0; i < n; i++) {
        cl[i].url = url;
        cl[i].rng = pvg_rng_new_secure();
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setstacksize(&at, 1u << 20);
        if (!cl[i].rng || pthread_create(&th[i], &at, client_thread, &cl[i]) != 0) _exit(5);
        pthread_attr_destroy(&at);
    }
    for (uint32_t i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        result r = {cl[i].user,        cl[i].status,
                    cl[i].st.rounds,   cl[i].st.compute_seconds,
                    cl[i].st.bytes_up, cl[i].st.bytes_down};
        if (cl[i].status != PVG_OK) fprintf(stderr, "client %u: %s\n", cl[i].user, cl[i].err);
        if (write(res_fd, &r, sizeof r) != sizeof r) _exit(6);
        pvg_rng_free(cl[i].rng);
    }
    _exit(0);
}

/* ---- the server's model ---- */

typedef struct trainer {
    pvg_fl_model *m;
    pvg_rng *rng;
    uint8_t *bc[MAX_ROUNDS + 1]; /* the broadcast published after each round */
    size_t bl[MAX_ROUNDS + 1];
    uint32_t survivors[MAX_ROUNDS + 1];
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
    pvg_status st = pvg_fl_model_apply(t->m, sum, d, survivors, t->rng, err);
    if (st == PVG_OK && round >= 1 && round <= MAX_ROUNDS) {
        free(t->bc[round]);
        t->bc[round] = NULL;
        t->survivors[round] = survivors;
        st = pvg_fl_model_broadcast(t->m, &t->bc[round], &t->bl[round], err);
    }
    return st;
}

/* Recall@20 and NDCG@20 of a published broadcast: every evaluated user
 * ranks on device (pvg_fl_client_recommend) with its training items. */
static int evaluate_broadcast(const uint8_t *bc, size_t bl, const split *s, double *recall,
                              double *ndcg)
{
    uint32_t ni = (uint32_t)s->Rt.n_cols, top[K_AT];
    float sc[K_AT];
    int64_t idx[K_AT];
    uint32_t *tg = malloc(ni * sizeof *tg);
    if (!tg) return -1;
    double sr = 0, sn = 0;
    for (size_t a = 0; a < s->n_eval; a++) {
        uint32_t u = s->users[a];
        const uint32_t *h = s->Rt.indices + s->Rt.indptr[u];
        size_t nh = (size_t)(s->Rt.indptr[u + 1] - s->Rt.indptr[u]), got = 0;
        pvg_error err;
        if (pvg_fl_client_recommend(bc, bl, h, s->Rt.data + s->Rt.indptr[u], nh, K_AT, top, sc,
                                    &got, &err) != PVG_OK) {
            fprintf(stderr, "recommend for user %u: %s\n", u, err.text);
            free(tg);
            return -1;
        }
        for (size_t i = 0; i < got; i++)
            idx[i] = top[i];
        size_t nt = 0;
        for (uint64_t j = s->T.indptr[u]; j < s->T.indptr[u + 1]; j++)
            if (!find_in(&s->Rt, u, s->T.indices[j])) tg[nt++] = s->T.indices[j];
        double r, nd, p, ap, hr;
        pvg_eval_user_metrics(idx, got, tg, nt, K_AT, &r, &nd, &p, &ap, &hr);
        sr += r;
        sn += nd;
    }
    free(tg);
    *recall = sr / (double)s->n_eval;
    *ndcg = sn / (double)s->n_eval;
    return 0;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: bench_fl_net_quality [SHARED_DATA_DIR] [--dataset "
            "ml-100k|online-retail] [--rounds N] [--processes P] [--seed S] [--factors K] "
            "[--server-lr LR] [--eps E] [--dp-factors K] [--dp-ridge KAPPA] [--clip C] "
            "[--noise distributed|central] [--dp-average] [--phase-seconds S] [--validation] "
            "[--no-in-process] [--no-centralised] [--item-prior descriptions|categories]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *dsname = "ml-100k", *noise = "distributed";
    int rounds = 2, procs = 8, factors = 32, dp_factors = 16, validation = 0, inproc = 1,
        central = 1, dp_average = 0;
    double server_lr = 0.5, eps = 0, dp_ridge = 3, clip = 1, phase_s = 600;
    const char *prior_src = NULL; /* --item-prior: descriptions or categories */
    unsigned long long seed_off = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dataset") && i + 1 < argc)
            dsname = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--processes") && i + 1 < argc)
            procs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed_off = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--factors") && i + 1 < argc)
            factors = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--server-lr") && i + 1 < argc)
            server_lr = atof(argv[++i]);
        else if (!strcmp(argv[i], "--eps") && i + 1 < argc)
            eps = atof(argv[++i]);
        else if (!strcmp(argv[i], "--dp-factors") && i + 1 < argc)
            dp_factors = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dp-ridge") && i + 1 < argc)
            dp_ridge = atof(argv[++i]);
        else if (!strcmp(argv[i], "--clip") && i + 1 < argc)
            clip = atof(argv[++i]);
        else if (!strcmp(argv[i], "--noise") && i + 1 < argc)
            noise = argv[++i];
        else if (!strcmp(argv[i], "--phase-seconds") && i + 1 < argc)
            phase_s = atof(argv[++i]);
        else if (!strcmp(argv[i], "--dp-average"))
            dp_average = 1;
        else if (!strcmp(argv[i], "--validation"))
            validation = 1;
        else if (!strcmp(argv[i], "--no-in-process"))
            inproc = 0;
        else if (!strcmp(argv[i], "--no-centralised"))
            central = 0;
        else if (!strcmp(argv[i], "--item-prior") && i + 1 < argc)
            prior_src = argv[++i];
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else
            return usage();
    }
    const dataset_def *def = NULL;
    for (int d = 0; d < N_DATASETS; d++)
        if (!strcmp(dsname, DATASETS[d].name)) def = &DATASETS[d];
    int dp_central = !strcmp(noise, "central");
    if (!def || rounds < 1 || rounds > MAX_ROUNDS || procs < 1 || procs > 4096 || factors < 1 ||
        factors > 256 || dp_factors < 1 || dp_factors > 256 || !(eps >= 0 && eps <= 100) ||
        !(clip > 0) || !(phase_s > 0) || (!dp_central && strcmp(noise, "distributed") != 0) ||
        (prior_src &&
         (strcmp(prior_src, "descriptions") != 0 && strcmp(prior_src, "categories") != 0)) ||
        (prior_src && (!(eps > 0) || strcmp(dsname, "ml-100k") != 0)))
        return usage();
    if (pvg_init() != PVG_OK) return 1;
    char path[4096], envd[4096];
    const char *data = find_data_dir("bench_fl_net_quality", dir, envd, sizeof envd);
    if (!data) return 77;
    snprintf(path, sizeof path, "%s/%s", data, def->file);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "bench_fl_net_quality: skipped: %s is absent\n", path);
        return 77;
    }
    pvg_dataset *ds = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_dataset_load_file(path, def->fmt, NULL, NULL, &ds, NULL, &err) != PVG_OK) {
        fprintf(stderr, "bench_fl_net_quality: %s: %s\n", path, err.text);
        return 1;
    }
    pvg_eval_options o;
    eval_options(def, &o);
    o.validation = validation;
    split s;
    if (make_split(ds, &o, &s) != 0) {
        fprintf(stderr, "bench_fl_net_quality: %s: split failed\n", def->name);
        return 1;
    }
    uint32_t n = (uint32_t)s.Rt.n_rows, ni = (uint32_t)s.Rt.n_cols;
    double delta = 1.0 / pow((double)n, 1.1);
    pvg_train_params tp;
    pvg_train_params_default(PVG_MODEL_IALS, &tp);
    tp.factors = factors;
    pvg_ials_resolve_defaults(&tp, &s.Rt);
    double alpha0 = pvg_ials_alpha0_of(&tp, s.Rt.n_rows, s.Rt.n_cols, s.Rt.nnz);
    double c_recall = NAN, c_ndcg = NAN;
    if (central) {
        pvg_eval_result er;
        if (pvg_eval_run(ds, &tp, &o, &er, &err) != PVG_OK) {
            fprintf(stderr, "bench_fl_net_quality: centralised iALS: %s\n", err.text);
            return 1;
        }
        c_recall = er.at[0].recall;
        c_ndcg = er.at[0].ndcg;
    }
    fprintf(stderr,
            "%s: %u clients, %u items, %zu training interactions, %zu evaluated; centralised "
            "iALS k=%d recall@20 %.4f ndcg@20 %.4f\n",
            def->name, n, ni, (size_t)s.Rt.nnz, s.n_eval, factors, c_recall, c_ndcg);

    /* the configuration: bench_fl_quality's */
    pvg_fl_config cfg;
    pvg_fl_config_default(&cfg);
    cfg.factors = (uint32_t)factors;
    cfg.reg = tp.reg;
    cfg.alpha = 0;
    cfg.alpha0 = alpha0;
    cfg.clip = 1e4;
    cfg.server_lr = server_lr;
    cfg.update = PVG_FL_UPDATE_GRADIENT;
    cfg.expected_cohort = (double)n;
    cfg.seed = 42;
    if (eps > 0) {
        cfg.factors = (uint32_t)dp_factors;
        cfg.update = PVG_FL_UPDATE_STATS;
        cfg.server_lr = 1;
        cfg.noise_ridge = dp_ridge;
        cfg.average_solves = dp_average;
        cfg.clip = clip;
        cfg.dp = dp_central ? PVG_FL_DP_CENTRAL : PVG_FL_DP_DISTRIBUTED;
        cfg.noise_multiplier = z_for(&cfg, 1.0, rounds, delta, eps);
    }
    double eps_acc = 0;
    if (eps > 0 && pvg_fl_epsilon(&cfg, 1.0, (uint32_t)rounds, delta, &eps_acc, &err) != PVG_OK) {
        fprintf(stderr, "bench_fl_net_quality: accountant: %s\n", err.text);
        return 1;
    }

    /* a store with one token per client */
    char tdir[] = "/tmp/pvg-bench-flnq-XXXXXX";
    if (!mkdtemp(tdir)) return 1;
    char dd[128], keyf[128];
    snprintf(dd, sizeof dd, "%s/data", tdir);
    snprintf(keyf, sizeof keyf, "%s/keys", tdir);
    setenv(PVG_ENV_KEY_FILE, keyf, 1);
    pvg_store_init_options io;
    memset(&io, 0, sizeof io);
    io.key_file = keyf;
    pvg_store *store = NULL;
    if (pvg_store_init(dd, &io, &err) != PVG_OK || pvg_store_open(dd, &store, &err) != PVG_OK) {
        fprintf(stderr, "store: %s\n", err.text);
        return 1;
    }
    char **tok = calloc(n, sizeof *tok);
    client *cl = calloc(n, sizeof *cl);
    if (!tok || !cl) return 1;
    for (uint32_t u = 0; u < n; u++) {
        char user[48];
        pvg_principal p;
        snprintf(user, sizeof user, "%s-shopper-%u", def->name, u);
        if (pvg_auth_token_issue(store, user, 86400, 0, &tok[u], &p, &err) != PVG_OK) {
            fprintf(stderr, "token: %s\n", err.text);
            return 1;
        }
        uint64_t b = s.Rt.indptr[u], e = s.Rt.indptr[u + 1];
        cl[u] = (client){.user = u,
                         .items = s.Rt.indices + b,
                         .w = s.Rt.data + b,
                         .n = (size_t)(e - b),
                         .token = tok[u],
                         .rounds = (uint32_t)rounds};
    }
    pvg_store_free(store);

    /* fork the client processes before any thread starts here; process p
     * runs clients [p n / P, (p + 1) n / P) */
    if ((uint32_t)procs > n) procs = (int)n;
    int port_pipe[2], res_pipe[2];
    if (pipe(port_pipe) != 0 || pipe(res_pipe) != 0) return 1;
    pid_t *pid = calloc((size_t)procs, sizeof *pid);
    double t_fork = now_s();
    for (int p = 0; p < procs; p++) {
        uint32_t a = (uint32_t)((uint64_t)p * n / (uint64_t)procs),
                 b = (uint32_t)((uint64_t)(p + 1) * n / (uint64_t)procs);
        pid[p] = fork();
        if (pid[p] == 0) {
            close(port_pipe[1]);
            close(res_pipe[0]);
            child_main(cl + a, b - a, port_pipe[0], res_pipe[1]);
        }
        if (pid[p] < 0) {
            fprintf(stderr, "fork %d: %s\n", p, strerror(errno));
            return 1;
        }
    }
    close(port_pipe[0]);
    close(res_pipe[1]);

    /* the server: the model starts from bench_fl_quality's generator seed */
    trainer tr;
    memset(&tr, 0, sizeof tr);
    pvg_rng *init = pvg_rng_new_INSECURE_deterministic_for_tests(1 + seed_off);
    tr.rng = pvg_rng_new_secure();
    if (pvg_fl_model_new(&cfg, ni, init, &tr.m, &err) != PVG_OK) {
        fprintf(stderr, "model: %s\n", err.text);
        return 1;
    }
    pvg_rng_free(init);
    pvg_fl_item_prior prior = {0}; /* --item-prior: as fl serve builds it */
    if (prior_src) {
        char **txt = NULL;
        size_t linked = 0;
        if (ml100k_catalogue_text(ds, data, 0, 0, &txt) != 0) return 1;
        pvg_status pst = !strcmp(prior_src, "categories")
                             ? pvg_fl_item_prior_from_labels((const char *const *)txt, ni, 0,
                                                             &prior, &linked, &err)
                             : pvg_fl_item_prior_from_titles((const char *const *)txt, ni, 0,
                                                             &prior, &linked, &err);
        for (uint32_t i = 0; i < ni; i++)
            free(txt[i]);
        free(txt);
        if (pst == PVG_OK) pst = pvg_fl_model_set_item_prior(tr.m, &prior, 1, 20, &err);
        if (pst != PVG_OK) {
            fprintf(stderr, "item prior: %s\n", err.text);
            return 1;
        }
        fprintf(stderr, "  item prior from the genre line as %s: %zu of %u items linked\n",
                prior_src, linked, ni);
    }
    size_t d = pvg_fl_update_dim(&cfg, ni);
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = (uint32_t)d;
    co.sample_rate = 1.0;
    co.min_clients = n;
    /* every client in every round: the survivor floor is the whole cohort,
       so the distributed noise is exactly the accounted sigma */
    co.min_survivors = n;
    for (int i = 0; i < 4; i++)
        co.phase_seconds[i] = phase_s;
    co.max_rounds = (uint32_t)rounds;
    co.server_threads = 2;
    co.broadcast = tr_broadcast;
    co.apply = tr_apply;
    co.ctx = &tr;
    co.rng = tr.rng;
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
    for (int p = 0; p < procs; p++)
        if (write(port_pipe[1], &port, sizeof port) != sizeof port) return 1;
    close(port_pipe[1]);
    fprintf(stderr, "  %d client processes, %u clients on port %d, d = %zu, %s\n", procs, n, port,
            d, eps > 0 ? "DP" : "no DP");
    pvg_fl_round_stats rs[MAX_ROUNDS + 1];
    memset(rs, 0, sizeof rs);
    int failed_round = 0;
    double t_start = now_s();
    for (int r = 1; r <= rounds; r++) {
        pvg_status st;
        while ((st = pvg_fl_coord_wait(coord, (uint64_t)r, 60, &rs[r], &err)) == PVG_ERR_BUSY)
            fprintf(stderr, "  waiting for round %d: %u registered\n", r,
                    pvg_fl_coord_registered(coord));
        if (st != PVG_OK || rs[r].phase != PVG_FL_PHASE_DONE) {
            fprintf(stderr, "round %d: %s\n", r, st != PVG_OK ? err.text : rs[r].error);
            failed_round = r;
            break;
        }
        fprintf(stderr, "  round %d: %u survivors, k %u, %.1f s\n", r, rs[r].survivors, rs[r].k,
                rs[r].seconds);
    }
    double t_end = now_s();
    uint32_t failed = 0, got = 0;
    double cs_max = 0, up = 0, down = 0;
    for (;;) {
        result r;
        if (read(res_pipe[0], &r, sizeof r) != (ssize_t)sizeof r) break;
        got++;
        failed += r.status != PVG_OK;
        if (r.compute_seconds > cs_max) cs_max = r.compute_seconds;
        up += (double)r.bytes_up;
        down += (double)r.bytes_down;
    }
    for (int p = 0; p < procs; p++)
        waitpid(pid[p], NULL, 0);
    pvg_server_free(srv);
    pvg_fl_coord_free(coord);

    /* on-device evaluation of each round's published item factors */
    double net_r[MAX_ROUNDS + 1] = {0}, net_n[MAX_ROUNDS + 1] = {0};
    int net_rounds = failed_round ? failed_round - 1 : rounds;
    for (int r = 1; r <= net_rounds; r++) {
        if (!tr.bc[r] || evaluate_broadcast(tr.bc[r], tr.bl[r], &s, &net_r[r], &net_n[r]) != 0)
            return 1;
        fprintf(stderr, "  networked round %d: recall@20 %.4f ndcg@20 %.4f\n", r, net_r[r],
                net_n[r]);
    }

    /* the same configuration and seed in process */
    double in_r[MAX_ROUNDS + 1] = {0}, in_n[MAX_ROUNDS + 1] = {0};
    if (inproc) {
        pvg_rng *rng = pvg_rng_new_INSECURE_deterministic_for_tests(1 + seed_off);
        pvg_fl_config c2 = cfg;
        c2.allow_insecure_rng = 1;
        pvg_fl_model *m = NULL;
        if (pvg_fl_model_new(&c2, ni, rng, &m, &err) != PVG_OK) return 1;
        if (prior_src && pvg_fl_model_set_item_prior(m, &prior, 1, 20, &err) != PVG_OK) return 1;
        fl_clients fc = {s.Rt.n_rows, ni, s.Rt.indptr, s.Rt.indices, s.Rt.data};
        for (int r = 1; r <= rounds; r++) {
            if (fl_sim_round(m, &fc, 1.0, rng, NULL, &err) != PVG_OK) {
                fprintf(stderr, "in-process round %d: %s\n", r, err.text);
                return 1;
            }
            uint8_t *bc = NULL;
            size_t bl = 0;
            if (pvg_fl_model_broadcast(m, &bc, &bl, &err) != PVG_OK ||
                evaluate_broadcast(bc, bl, &s, &in_r[r], &in_n[r]) != 0)
                return 1;
            free(bc);
            fprintf(stderr, "  in-process round %d: recall@20 %.4f ndcg@20 %.4f\n", r, in_r[r],
                    in_n[r]);
        }
        pvg_fl_model_free(m);
        pvg_rng_free(rng);
    }

    double la[3] = {0, 0, 0};
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (fscanf(lf, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3) la[0] = -1;
        fclose(lf);
    }
    printf("{\"bench\": \"fl_net_quality\", \"dataset\": \"%s\", \"protocol\": \"%s\", "
           "\"split\": \"%s\", \"seed\": %llu, \"clients\": %u, \"items\": %u, "
           "\"train_interactions\": %zu, \"users_evaluated\": %zu, \"processes\": %d,\n"
           " \"factors\": %u, \"update\": \"%s\", \"server_lr\": %g, \"reg\": %.6g, "
           "\"alpha0\": %.6g, \"dp\": \"%s\", \"epsilon\": %g, \"epsilon_accounted\": %.4f, "
           "\"delta\": %.3g, \"noise_multiplier\": %.4f, \"clip\": %g, \"noise_ridge\": %g, "
           "\"average_solves\": %d, \"item_prior\": \"%s\", "
           "\"d\": %zu,\n \"centralised_ials\": {\"factors\": %d, \"recall\": %.5f, \"ndcg\": "
           "%.5f, \"ran\": %s},\n \"rounds\": %d, \"rounds_done\": %d, \"networked\": [",
           def->name, def->protocol_text, validation ? "validation" : "test", seed_off, n, ni,
           (size_t)s.Rt.nnz, s.n_eval, procs, cfg.factors,
           cfg.update == PVG_FL_UPDATE_STATS ? "stats" : "gradient", cfg.server_lr, cfg.reg,
           cfg.alpha0, eps > 0 ? (dp_central ? "central" : "distributed") : "none", eps, eps_acc,
           eps > 0 ? delta : 0.0, cfg.noise_multiplier, cfg.clip, cfg.noise_ridge,
           cfg.average_solves, prior_src ? prior_src : "none", d, factors, central ? c_recall : 0.0,
           central ? c_ndcg : 0.0, central ? "true" : "false", rounds, net_rounds);
    for (int r = 1; r <= net_rounds; r++)
        printf("%s\n  {\"round\": %d, \"recall\": %.5f, \"ndcg\": %.5f, \"survivors\": %u, "
               "\"k\": %u, \"t\": %u, \"seconds\": %.2f, \"server_seconds\": %.2f}",
               r > 1 ? "," : "", r, net_r[r], net_n[r], rs[r].survivors, rs[r].k, rs[r].t,
               rs[r].seconds, rs[r].server_seconds);
    printf("],\n \"in_process\": [");
    for (int r = 1; inproc && r <= rounds; r++)
        printf("%s{\"round\": %d, \"recall\": %.5f, \"ndcg\": %.5f}", r > 1 ? ", " : "", r, in_r[r],
               in_n[r]);
    printf("],\n \"wall_seconds_from_fork\": %.2f, \"rounds_seconds\": %.2f, "
           "\"clients_reporting\": %u, \"clients_failed\": %u, "
           "\"client_compute_seconds_max\": %.3f, \"bytes_up_per_client\": %.0f, "
           "\"bytes_down_per_client\": %.0f, \"loadavg\": [%.2f, %.2f, %.2f]}\n",
           t_end - t_fork, t_end - t_start, got, failed, cs_max, got ? up / got : 0,
           got ? down / got : 0, la[0], la[1], la[2]);
    for (int r = 0; r <= MAX_ROUNDS; r++)
        free(tr.bc[r]);
    pvg_fl_model_free(tr.m);
    pvg_fl_item_prior_free(&prior);
    pvg_rng_free(tr.rng);
    for (uint32_t u = 0; u < n; u++)
        pvg_auth_credential_free(tok[u]);
    free(tok);
    free(cl);
    free(pid);
    pvg_csr_free(&s.Rt);
    pvg_csr_free(&s.T);
    free(s.users);
    pvg_dataset_free(ds);
    snprintf(path, sizeof path, "rm -rf '%s'", tdir);
    if (system(path) != 0) fprintf(stderr, "could not remove %s\n", tdir);
    return failed_round || failed ? 1 : 0;
}
