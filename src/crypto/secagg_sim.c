/*
 * secagg_sim.c - an in-process simulation of one secure-aggregation
 * session: n client state machines and one server exchanging the real wire
 * messages through memory, with clients dropping out at random rounds.
 * Used by `privguide secagg simulate`, the tests and bench/secagg.
 */
#include "crypto/secagg_internal.h"

#include <privguide/rng.h>

#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

void pvg_secagg_sim_result_clear(pvg_secagg_sim_result *r)
{
    if (!r) return;
    free(r->survivors);
    free(r->sum);
    memset(r, 0, sizeof *r);
}

typedef struct {
    pvg_secagg_client *c;
    int drop_round; /* 0..3: does not send that round's message; 4: never drops */
    int alive;      /* still taking part */
    double secs;
    size_t up, down;
} sim_client;

/* word j of a vector of w-byte words (2, 4 or 8), and its store (mod 2^(8w)) */
static uint64_t word_get(const void *x, size_t w, size_t j)
{
    return w == 2   ? ((const uint16_t *)x)[j]
           : w == 4 ? ((const uint32_t *)x)[j]
                    : ((const uint64_t *)x)[j];
}

static void word_put(void *x, size_t w, size_t j, uint64_t v)
{
    if (w == 2)
        ((uint16_t *)x)[j] = (uint16_t)v;
    else if (w == 4)
        ((uint32_t *)x)[j] = (uint32_t)v;
    else
        ((uint64_t *)x)[j] = v;
}

pvg_status pvg_secagg_simulate(const pvg_secagg_sim_options *o, pvg_secagg_sim_result *r,
                               pvg_error *err)
{
    if (!o || !r || !o->rng)
        return pvg_error_set(err, PVG_ERR_INVALID, "simulate: missing argument");
    memset(r, 0, sizeof *r);
    if (!(o->dropout >= 0 && o->dropout <= 1))
        return pvg_error_set(err, PVG_ERR_INVALID, "simulate: dropout must be in [0, 1]");
    pvg_status st = pvg_rng_require_secure(o->rng, o->allow_insecure_rng, "a simulation", err);
    if (st != PVG_OK) return st;
    pvg_secagg_params p = o->params;
    pvg_rng_bytes(o->rng, p.session, 16);
    st = pvg_secagg_params_check(&p, err);
    if (st != PVG_OK) return st;
    uint32_t n = p.n;
    size_t d = p.d, w = p.bits / 8;
    sim_client *cl = calloc(n, sizeof *cl);
    uint32_t *order = malloc(sizeof(uint32_t) * n);
    uint64_t *plain = calloc(d, sizeof(uint64_t));
    void *x = malloc(d * w);
    uint8_t *xb = malloc(d * 4);
    pvg_secagg_server *srv = NULL;
    uint8_t *in = NULL, *out = NULL;
    size_t in_len = 0, out_len = 0;
    if (!cl || !order || !plain || !x || !xb) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "simulate: out of memory");
        goto done;
    }
    /* who drops, and when */
    size_t n_drop = (size_t)(o->dropout * n + 0.5);
    for (uint32_t i = 0; i < n; i++)
        order[i] = i;
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)pvg_rng_uniform(o->rng, (uint64_t)i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (uint32_t i = 0; i < n; i++)
        cl[i].drop_round = 4;
    /* the first four (random) dropping clients cover rounds 0..3, so every
     * round sees dropouts when at least four drop; the rest pick uniformly */
    for (size_t i = 0; i < n_drop; i++)
        cl[order[i]].drop_round = i < 4 ? (int)i : (int)pvg_rng_uniform(o->rng, 4);

    double t0 = now();
    st = pvg_secagg_server_new(&p, &srv, err);
    if (st != PVG_OK) goto done;
    pvg_secagg_server_set_threads(srv, o->server_threads ? o->server_threads : 1);
    double server_secs = now() - t0;
    for (uint32_t i = 0; i < n; i++) {
        t0 = now();
        st = pvg_secagg_client_new_ex(&p, i, o->rng, o->allow_insecure_rng, &cl[i].c, err);
        cl[i].secs += now() - t0;
        if (st != PVG_OK) goto done;
        cl[i].alive = 1;
    }
    for (int round = 0; round < 4; round++) {
        for (uint32_t i = 0; i < n; i++) {
            sim_client *c = &cl[i];
            if (!c->alive) continue;
            if (c->drop_round == round) {
                c->alive = 0;
                r->dropped_in_round[round]++;
                continue;
            }
            if (round > 0) { /* the server's reply to the previous round */
                t0 = now();
                st = pvg_secagg_server_message_for(srv, i, &in, &in_len, err);
                server_secs += now() - t0;
                if (st != PVG_OK) goto done;
                c->down += in_len;
            }
            if (round == 2) {    /* the client's input (not timed) */
                if (o->inputs) { /* bits 16: the inputs mod 2^16 */
                    for (size_t j = 0; j < d; j++)
                        word_put(x, w, j, o->inputs[(size_t)i * d + j]);
                } else {
                    pvg_rng_bytes(o->rng, xb, d * 4);
                    for (size_t j = 0; j < d; j++)
                        word_put(x, w, j, sa_get32(xb + 4 * j));
                }
            }
            t0 = now();
            switch (round) {
            case 0:
                st = pvg_secagg_client_advertise(c->c, &out, &out_len, err);
                break;
            case 1:
                st = pvg_secagg_client_share_keys(c->c, in, in_len, &out, &out_len, err);
                break;
            case 2:
                st = pvg_secagg_client_masked_input(c->c, in, in_len, x, &out, &out_len, err);
                break;
            default:
                st = pvg_secagg_client_unmask(c->c, in, in_len, &out, &out_len, err);
                break;
            }
            c->secs += now() - t0;
            free(in);
            in = NULL;
            if (st == PVG_ERR_ABORTED) { /* too few live neighbours: this client drops */
                c->alive = 0;
                r->dropped_in_round[round]++;
                st = PVG_OK;
                continue;
            }
            if (st != PVG_OK) goto done;
            c->up += out_len;
            t0 = now();
            st = pvg_secagg_server_receive(srv, out, out_len, err);
            server_secs += now() - t0;
            free(out);
            out = NULL;
            if (st != PVG_OK) goto done;
            if (round == 2) /* accepted into the sum */
                for (size_t j = 0; j < d; j++)
                    plain[j] += word_get(x, w, j);
        }
        t0 = now();
        st = pvg_secagg_server_advance(srv, err);
        server_secs += now() - t0;
        if (st != PVG_OK) goto done;
    }
    r->n_survivors = pvg_secagg_server_survivors(srv, NULL);
    r->survivors = malloc(sizeof(uint32_t) * (r->n_survivors ? r->n_survivors : 1));
    r->sum = malloc(sizeof(uint64_t) * d);
    if (!r->survivors || !r->sum) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "simulate: out of memory");
        goto done;
    }
    pvg_secagg_server_survivors(srv, r->survivors);
    st = pvg_secagg_server_result(srv, x, err);
    if (st != PVG_OK) goto done;
    r->exact = 1;
    uint64_t mk = w == 8 ? UINT64_MAX : (1ull << (8 * w)) - 1;
    for (size_t j = 0; j < d; j++) {
        r->sum[j] = word_get(x, w, j);
        if (r->sum[j] != (plain[j] & mk)) r->exact = 0;
    }
    /* statistics over the survivors */
    double *secs = malloc(sizeof(double) * (r->n_survivors ? r->n_survivors : 1));
    if (!secs) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "simulate: out of memory");
        goto done;
    }
    double up = 0, down = 0;
    for (size_t i = 0; i < r->n_survivors; i++) {
        sim_client *c = &cl[r->survivors[i]];
        secs[i] = c->secs;
        up += (double)c->up;
        down += (double)c->down;
    }
    qsort(secs, r->n_survivors, sizeof *secs, cmp_double);
    if (r->n_survivors) {
        r->client_seconds_p50 = secs[r->n_survivors / 2];
        r->client_seconds_max = secs[r->n_survivors - 1];
        r->bytes_up_per_client = up / (double)r->n_survivors;
        r->bytes_down_per_client = down / (double)r->n_survivors;
    }
    free(secs);
    r->server_seconds = server_secs;
    r->plain_vector_bytes = (double)d * (double)w;
done:
    free(in);
    free(out);
    if (cl)
        for (uint32_t i = 0; i < n; i++)
            pvg_secagg_client_free(cl[i].c);
    pvg_secagg_server_free(srv);
    free(cl);
    free(order);
    free(plain);
    free(x);
    free(xb);
    if (st != PVG_OK) {
        free(r->survivors);
        free(r->sum);
        memset(r, 0, sizeof *r);
    }
    return st;
}
