/*
 * cmd_fl.c - federated training over HTTP: `fl serve` (the privguide server
 * with the round coordinator behind /v1/fl/), `fl client` (one shopper's
 * client, or several in threads, over libcurl) and `fl simulate` (a server
 * in-process and real client processes on loopback).
 */
#include "cli.h"
#include "fl/fl_client_core.h"

#include <privguide/auth.h>
#include <privguide/fl.h>
#include <privguide/fl_net.h>
#include <privguide/ledger.h>
#include <privguide/rng.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---- the public item list (catalog): index = line number ---- */
typedef struct items {
    char **id;
    uint32_t *order; /* indices sorted by id */
    uint32_t n;
} items;

static void items_free(items *it)
{
    for (uint32_t i = 0; i < it->n; i++)
        free(it->id[i]);
    free(it->id);
    free(it->order);
    memset(it, 0, sizeof *it);
}

static const items *g_sort_items;
static int cmp_order(const void *a, const void *b)
{
    return strcmp(g_sort_items->id[*(const uint32_t *)a], g_sort_items->id[*(const uint32_t *)b]);
}

static int items_index(items *it)
{
    it->order = malloc(sizeof *it->order * (it->n ? it->n : 1));
    if (!it->order) return -1;
    for (uint32_t i = 0; i < it->n; i++)
        it->order[i] = i;
    g_sort_items = it;
    qsort(it->order, it->n, sizeof *it->order, cmp_order);
    for (uint32_t i = 1; i < it->n; i++)
        if (strcmp(it->id[it->order[i]], it->id[it->order[i - 1]]) == 0) return -2;
    return 0;
}

static int items_find(const items *it, const char *id, uint32_t *out)
{
    uint32_t lo = 0, hi = it->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(it->id[it->order[mid]], id);
        if (c == 0) {
            *out = it->order[mid];
            return 1;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static int items_read(const char *path, items *it)
{
    memset(it, 0, sizeof *it);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "privguide: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[1024];
    uint32_t cap = 0;
    long ln = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (it->n == cap) {
            cap = cap ? cap * 2 : 1024;
            char **n = realloc(it->id, sizeof *n * cap);
            if (!n) break;
            it->id = n;
        }
        it->id[it->n++] = strdup(line);
    }
    fclose(f);
    int r = items_index(it);
    if (r != 0 || it->n == 0) {
        fprintf(stderr, "privguide: %s: %s\n", path,
                it->n == 0 ? "no items" : "an item id is listed twice");
        items_free(it);
        return -1;
    }
    return 0;
}

/* ---- a shopper's events (native JSONL) -> item indices and weights ---- */
typedef struct history {
    uint32_t *item;
    float *w;
    size_t n;
    long skipped; /* events of items outside the list */
} history;

static int history_add(history *h, size_t *cap, uint32_t idx)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->item[i] == idx) {
            h->w[i] += 1;
            return 0;
        }
    if (h->n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        uint32_t *a = realloc(h->item, sizeof *a * *cap);
        if (!a) return -1;
        h->item = a;
        float *b = realloc(h->w, sizeof *b * *cap);
        if (!b) return -1;
        h->w = b;
    }
    h->item[h->n] = idx;
    h->w[h->n++] = 1;
    return 0;
}

static int history_read(const char *path, const items *it, history *h)
{
    memset(h, 0, sizeof *h);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "privguide: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    long ln = 0;
    ssize_t got;
    int rc = 0;
    while ((got = getline(&line, &lcap, f)) > 0) {
        ln++;
        if (got > 65536) {
            fprintf(stderr, "privguide: %s:%ld: line longer than 65536 bytes\n", path, ln);
            rc = -1;
            break;
        }
        if (strspn(line, " \t\r\n") == (size_t)got) continue;
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j || !json_is_object(j)) {
            fprintf(stderr, "privguide: %s:%ld:%d: %s\n", path, ln, je.column,
                    j ? "a JSON object was expected" : je.text);
            json_decref(j);
            rc = -1;
            break;
        }
        const char *item = json_string_value(json_object_get(j, "item"));
        const char *type = json_string_value(json_object_get(j, "type"));
        uint32_t idx;
        if (item && (!type || strcmp(type, "item") != 0)) {
            if (items_find(it, item, &idx)) {
                if (history_add(h, &cap, idx) != 0) rc = -1;
            } else {
                h->skipped++;
            }
        }
        json_decref(j);
        if (rc) break;
    }
    free(line);
    fclose(f);
    return rc;
}

static void history_free(history *h)
{
    if (h->item) sodium_memzero(h->item, sizeof *h->item * h->n);
    if (h->w) sodium_memzero(h->w, sizeof *h->w * h->n);
    free(h->item);
    free(h->w);
    memset(h, 0, sizeof *h);
}

/* ---- client ---- */
/* One shopper's client: its history goes into a client core (fl_client_core.h,
 * sodium memory), which makes every decision under the client's own policy;
 * pvg_fl_client_run_core is its transport. */
typedef struct one_client {
    const pvg_fl_core_policy *pol;
    char token[600];
    char data[512];
    int drop_phase;
    history h;
    pvg_rng *rng;
    const char *server;
    uint32_t rounds;
    double timeout;
    pvg_fl_client_stats st;
    char refusal[400]; /* the reason of its last refused round, "" if none */
    pvg_status status;
    pvg_error err;
} one_client;

static void *client_main(void *arg)
{
    one_client *c = arg;
    pvg_fl_core *core = NULL;
    c->status =
        pvg_fl_core_new(c->h.item, c->h.w, c->h.n, c->pol, c->rounds, c->rng, 0, 0, &core, &c->err);
    history_free(&c->h); /* the core holds its own copy, in sodium memory */
    if (c->status != PVG_OK) return NULL;
    pvg_fl_core_set_drop_phase(core, c->drop_phase);
    pvg_fl_client_options o;
    memset(&o, 0, sizeof o);
    o.server = c->server;
    o.token = c->token;
    o.timeout_s = c->timeout;
    c->status = pvg_fl_client_run_core(&o, core, &c->st, &c->err);
    const char *why = NULL;
    pvg_fl_core_stats(core, NULL, NULL, &why);
    snprintf(c->refusal, sizeof c->refusal, "%s", why ? why : "");
    pvg_fl_core_free(core);
    return NULL;
}

static int run_fl_client(cli_ctx *cx)
{
    const char *server = cli_str_req(cx, "server");
    const char *items_path = cli_str_req(cx, "items");
    uint32_t rounds = (uint32_t)cli_int_range(cx, "rounds", 0, 0, 1000000);
    double timeout = cli_double(cx, "timeout", 600);
    const char *cf = cli_str(cx, "clients-file");
    if (!cf && (!cli_has(cx, "token") || !cli_has(cx, "data"))) {
        fprintf(stderr, "privguide: fl client: --token and --data (or --clients-file) are "
                        "required\n");
        return CLI_EXIT_USAGE;
    }
    items it;
    if (items_read(items_path, &it) != 0) return CLI_EXIT_FAIL;
    one_client *cl = NULL;
    size_t n = 0;
    if (cf) {
        FILE *f = fopen(cf, "r");
        if (!f) {
            fprintf(stderr, "privguide: %s: %s\n", cf, strerror(errno));
            items_free(&it);
            return CLI_EXIT_FAIL;
        }
        char line[1200];
        size_t cap = 0;
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (!line[0]) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                cl = realloc(cl, sizeof *cl * cap);
            }
            one_client *c = &cl[n];
            memset(c, 0, sizeof *c);
            char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
            if (!t1 || (size_t)(t1 - line) >= sizeof c->token) {
                fprintf(stderr, "privguide: %s: want TOKEN<TAB>DATAFILE[<TAB>DROP-PHASE]\n", cf);
                fclose(f);
                free(cl);
                items_free(&it);
                return CLI_EXIT_USAGE;
            }
            memcpy(c->token, line, (size_t)(t1 - line));
            if (t2) {
                *t2 = 0;
                c->drop_phase = atoi(t2 + 1);
            }
            snprintf(c->data, sizeof c->data, "%s", t1 + 1);
            n++;
        }
        sodium_memzero(line, sizeof line);
        fclose(f);
    } else {
        cl = calloc(1, sizeof *cl);
        n = 1;
        snprintf(cl->token, sizeof cl->token, "%s", cli_str(cx, "token"));
        snprintf(cl->data, sizeof cl->data, "%s", cli_str(cx, "data"));
        cl->drop_phase = (int)cli_int_range(cx, "drop-phase", 0, 0, 4);
    }
    pvg_fl_core_policy pol;
    memset(&pol, 0, sizeof pol);
    pol.allow_no_dp = cli_has(cx, "allow-no-dp");
    pol.max_epsilon = cli_double(cx, "max-epsilon", 10);
    pol.delta = cli_double(cx, "dp-delta", 1e-5);
    pol.q = cli_double(cx, "dp-sample-rate", 1);
    pol.rounds = (uint32_t)cli_int_range(cx, "dp-rounds", 1, 1, 1000000);
    /* the largest session this catalogue can need (factors <= 256): a server that asks for
       more is refused before anything is allocated or fetched */
    pol.catalogue_items = it.n;
    int rc = CLI_EXIT_OK;
    if (!(pol.max_epsilon > 0) || !(pol.delta > 0 && pol.delta < 1) || !(pol.q > 0 && pol.q <= 1)) {
        fprintf(stderr, "privguide: fl client: want --max-epsilon > 0, 0 < --dp-delta < 1, "
                        "0 < --dp-sample-rate <= 1\n");
        rc = CLI_EXIT_USAGE;
    }
    pthread_t *th = calloc(n ? n : 1, sizeof *th);
    for (size_t i = 0; i < n && rc == CLI_EXIT_OK; i++) {
        if (history_read(cl[i].data, &it, &cl[i].h) != 0) rc = CLI_EXIT_FAIL;
        cl[i].rng = pvg_rng_new_secure();
        cl[i].pol = &pol;
        cl[i].server = server;
        cl[i].rounds = rounds;
        cl[i].timeout = timeout;
    }
    size_t started = 0;
    for (size_t i = 0; i < n && rc == CLI_EXIT_OK; i++, started++)
        if (pthread_create(&th[i], NULL, client_main, &cl[i]) != 0) rc = CLI_EXIT_FAIL;
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    json_t *arr = json_array();
    for (size_t i = 0; i < started; i++) {
        one_client *c = &cl[i];
        json_t *o = json_pack("{s:i, s:i, s:s, s:I, s:I, s:I, s:f, s:f, s:s}", "rounds",
                              (int)c->st.rounds, "refused", (int)c->st.refused, "refusal",
                              c->refusal, "bytes_up", (json_int_t)c->st.bytes_up, "bytes_down",
                              (json_int_t)c->st.bytes_down, "requests", (json_int_t)c->st.requests,
                              "compute_seconds", c->st.compute_seconds, "seconds", c->st.seconds,
                              "status", c->status == PVG_OK ? "ok" : c->err.text);
        json_array_append_new(arr, o);
        if (c->st.refused)
            fprintf(stderr, "privguide: fl client: refused %u round(s); the last: %s\n",
                    c->st.refused, c->refusal);
        if (c->status != PVG_OK) {
            fprintf(stderr, "privguide: fl client: %s\n", c->err.text);
            rc = CLI_EXIT_FAIL;
        }
    }
    char *s = json_dumps(arr, JSON_COMPACT);
    if (s) printf("%s\n", s);
    free(s);
    json_decref(arr);
    for (size_t i = 0; i < n; i++) {
        history_free(&cl[i].h);
        pvg_rng_free(cl[i].rng);
        sodium_memzero(cl[i].token, sizeof cl[i].token);
    }
    free(th);
    free(cl);
    items_free(&it);
    return rc;
}

/* ---- server side: the model behind the coordinator ---- */
typedef struct trainer {
    pvg_fl_model *m;
    pvg_rng *rng;
    FILE *log; /* one JSON line per round (aggregates only) */
} trainer;

static pvg_status tr_broadcast(void *ctx, uint64_t round, uint8_t **out, size_t *len,
                               pvg_error *err)
{
    trainer *t = ctx;
    (void)round;
    return pvg_fl_model_broadcast(t->m, out, len, err);
}

static pvg_status tr_apply(void *ctx, uint64_t round, const uint32_t *sum, size_t d,
                           uint32_t survivors, pvg_error *err)
{
    trainer *t = ctx;
    (void)round;
    return pvg_fl_model_apply(t->m, sum, d, survivors, t->rng, err);
}

typedef struct fl_setup {
    pvg_fl_config cfg;
    uint32_t n_items;
    double epsilon, delta, q; /* the accounted (epsilon, delta) of the whole run; 0: no DP */
    uint32_t rounds, n_min;
    unsigned mask_rounds; /* the masks' ChaCha rounds: 8 (default), 12 or 20 */
    uint32_t max_cohort;  /* a 16-bit lane's cohort bound (0: none but SecAgg's) */
    trainer tr;
    pvg_fl_coord *coord;
    pvg_rng *rng;
    items it; /* the public item list, served at GET /v1/fl/items */
} fl_setup;

/* The flag `name`, or `fl-name` under `privguide serve` (pre = "fl-"). */
static const char *fname(const char *pre, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s", pre, name);
    return buf;
}

/* The noise multiplier z whose (epsilon, delta) over `rounds` rounds at rate
 * q is at most `target`: binary search on the decreasing pvg_fl_epsilon.
 * cfg->noise_multiplier gets z, *eps the accounted epsilon. 0, or -1. */
static int calibrate(pvg_fl_config *cfg, double target, double delta, double q, uint32_t rounds,
                     double *eps)
{
    pvg_error err;
    double lo = 1e-3, hi = 5e3, e = INFINITY;
    cfg->noise_multiplier = hi;
    if (pvg_fl_epsilon(cfg, q, rounds, delta, &e, &err) != PVG_OK || e > target) {
        fprintf(stderr, "privguide: fl: epsilon %g is out of reach at delta %g, q %g, %u rounds\n",
                target, delta, q, rounds);
        return -1;
    }
    for (int i = 0; i < 100 && hi - lo > 1e-6 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        cfg->noise_multiplier = mid;
        if (pvg_fl_epsilon(cfg, q, rounds, delta, &e, &err) == PVG_OK && e <= target)
            hi = mid;
        else
            lo = mid;
    }
    cfg->noise_multiplier = hi;
    if (pvg_fl_epsilon(cfg, q, rounds, delta, eps, &err) != PVG_OK) return -1;
    return 0;
}

/* Charges the run's (epsilon, delta) once, under purpose federated_training,
 * to the store of data dir dd, before any round. 0 or a CLI exit code. */
static int charge_run(const char *dd, const fl_setup *s)
{
    pvg_store *store = NULL;
    pvg_error err;
    pvg_status st = pvg_store_open(dd, &store, &err);
    if (st != PVG_OK) return cli_fail("fl: store", st, &err);
    char what[256];
    snprintf(what, sizeof what,
             "federated iALS: %u rounds, q=%g, clip=%g, z=%.6g, %s noise, survivor floor %u",
             s->rounds, s->q, s->cfg.clip, s->cfg.noise_multiplier,
             s->cfg.dp == PVG_FL_DP_CENTRAL ? "central" : "distributed", s->n_min);
    int64_t id = 0;
    st = pvg_ledger_charge(store, pvg_ledger_purpose_name(PVG_LEDGER_FEDERATED_TRAINING), what,
                           s->cfg.dp == PVG_FL_DP_CENTRAL ? "gaussian" : "discrete-gaussian",
                           s->epsilon, s->delta, &id, &err);
    pvg_store_free(store);
    if (st != PVG_OK) return cli_fail("fl: privacy budget (no round was run)", st, &err);
    return 0;
}

/* The start-up words about DP (the broadcast carries the same config). */
static void print_dp(const fl_setup *s)
{
    if (s->cfg.dp == PVG_FL_DP_NONE)
        fprintf(stderr, "privguide: federated training WITHOUT differential privacy (no "
                        "--epsilon): the broadcast announces dp=none\n");
    else
        fprintf(stderr,
                "privguide: federated training with client-level DP: %s noise, epsilon=%.6g "
                "delta=%.6g over %u rounds at q=%g, clip=%g, noise multiplier=%.6g, survivor "
                "floor %u (charged to federated_training)\n",
                s->cfg.dp == PVG_FL_DP_CENTRAL ? "central" : "distributed", s->epsilon, s->delta,
                s->rounds, s->q, s->cfg.clip, s->cfg.noise_multiplier, s->n_min);
}

/* The encoding for sums of s->max_cohort clients in a `lane`-bit lane
 * (pvg_fl_config_for_cohort). 0, or 1 with the reason on stderr. */
static int cohort_step(fl_setup *s, int lane, const char *pre)
{
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_fl_config_for_cohort(&s->cfg, s->n_items, (unsigned)lane, s->max_cohort, s->n_min,
                                 &err) == PVG_OK)
        return 0;
    fprintf(stderr, "privguide: fl: a %d-bit lane for a cohort of %u (--%smax-cohort): %s\n", lane,
            s->max_cohort, pre, err.text);
    return 1;
}

/* --item-prior SOURCE (--fl-item-prior under serve): the public item prior
 * (docs/federated.md "A prior from public item data") from the declared
 * catalogue of the served items (ids[0..n_items)), each item's
 * PVG_FL_PRIOR_NEIGHBOURS nearest: "titles" the declared titles and
 * "descriptions" the declared descriptions, both as text
 * (pvg_fl_item_prior_from_titles); "categories" the descriptions as lists
 * of whole labels (pvg_fl_item_prior_from_labels; a bad list is refused
 * naming the item's id). An item without the declared text gets no
 * neighbours; when none of them has it the run is refused (exit 1). Only
 * with DP (--epsilon) and the statistics form; checked before any budget
 * is charged. *P stays zeroed without the flag. */
static int prior_setup(cli_ctx *cx, const fl_setup *s, const char *const *ids, uint32_t n_items,
                       const char *pre, const char *dd, pvg_fl_item_prior *P, double *weight,
                       double *count_half)
{
    char b[64], e[64];
    *P = (pvg_fl_item_prior){0};
    const char *kind = cli_str(cx, fname(pre, "item-prior", b, sizeof b));
    if (!kind) {
        const char *sub[] = {"item-prior-weight", "item-prior-count"};
        for (int i = 0; i < 2; i++)
            if (cli_has(cx, fname(pre, sub[i], b, sizeof b))) {
                fprintf(stderr, "privguide: --%s needs --%sitem-prior SOURCE\n", b, pre);
                return CLI_EXIT_USAGE;
            }
        return 0;
    }
    int src = !strcmp(kind, "titles")         ? 0
              : !strcmp(kind, "descriptions") ? 1
              : !strcmp(kind, "categories")   ? 2
                                              : -1;
    if (src < 0) {
        fprintf(stderr,
                "privguide: --%s wants titles, descriptions or categories (the declared "
                "catalogue's), got '%s'\n",
                b, kind);
        return CLI_EXIT_USAGE;
    }
    if (!cli_has(cx, fname(pre, "epsilon", e, sizeof e)) || !dd) {
        fprintf(stderr,
                "privguide: --%s needs --%s: the prior shapes only the noise ridge of a DP run\n",
                b, e);
        return CLI_EXIT_USAGE;
    }
    if (s->cfg.update != PVG_FL_UPDATE_STATS) {
        fprintf(stderr, "privguide: --%s needs the statistics form (--%s stats), not gradient\n", b,
                fname(pre, "update", e, sizeof e));
        return CLI_EXIT_USAGE;
    }
    *weight = cli_double(cx, fname(pre, "item-prior-weight", e, sizeof e), 1);
    if (!(*weight > 0 && *weight <= 1)) {
        fprintf(stderr, "privguide: --%s wants 0 < W <= 1\n", e);
        return CLI_EXIT_USAGE;
    }
    *count_half = cli_double(cx, fname(pre, "item-prior-count", e, sizeof e), 20);
    if (!(*count_half >= 0 && *count_half <= 1e9)) {
        fprintf(stderr, "privguide: --%s wants 0 <= H <= 1e9\n", e);
        return CLI_EXIT_USAGE;
    }
    pvg_store *store = NULL;
    pvg_error err;
    pvg_error_clear(&err);
    char **titles = NULL;
    size_t found = 0, linked = 0;
    pvg_status st = pvg_store_open(dd, &store, &err);
    if (st == PVG_OK)
        st = pvg_store_catalog_texts(store, ids, n_items,
                                     src ? PVG_CATALOG_FIELD_DESCRIPTION : PVG_CATALOG_FIELD_TITLE,
                                     &titles, &found, &err);
    pvg_store_free(store);
    if (st == PVG_OK && found == 0) { /* no public text at all: no prior, refused uncharged */
        fprintf(stderr,
                "privguide: fl: item prior (--%s %s): none of the %u served items has a declared "
                "%s (privguide catalog import, docs/store.md \"The declared catalogue\")\n",
                b, kind, n_items, src ? "description" : "title");
        pvg_catalog_titles_free(titles, n_items);
        return CLI_EXIT_FAIL;
    }
    if (st == PVG_OK && src == 2) {
        st = pvg_fl_item_prior_from_labels((const char *const *)titles, n_items, 0, P, &linked,
                                           &err);
        if (st == PVG_ERR_INVALID && err.line >= 1 && (uint64_t)err.line <= n_items) {
            fprintf(stderr,
                    "privguide: fl: item prior (--%s categories): the declared description of "
                    "item '%s' is not a category list: %s\n",
                    b, ids[err.line - 1], err.text);
            pvg_catalog_titles_free(titles, n_items);
            return CLI_EXIT_FAIL;
        }
    } else if (st == PVG_OK)
        st = pvg_fl_item_prior_from_titles((const char *const *)titles, n_items, 0, P, &linked,
                                           &err);
    if (titles) pvg_catalog_titles_free(titles, n_items);
    if (st != PVG_OK) return cli_fail("fl: item prior", st, &err);
    fprintf(stderr,
            "privguide: fl: item prior from the declared catalogue's %s: %zu of %u items %s, %zu "
            "linked (up to %d neighbours each), weight %g, count %g\n",
            kind, found, n_items, src ? "described" : "titled", linked, PVG_FL_PRIOR_NEIGHBOURS,
            *weight, *count_half);
    return 0;
}

static int setup_dp(cli_ctx *cx, fl_setup *s, uint32_t min_clients, int lane, const char *pre,
                    const char *dd);
static int coord_start(cli_ctx *cx, fl_setup *s, uint32_t n_items, uint32_t min_clients,
                       const char *pre);

/* dd: the data dir whose budget a DP run is charged to (NULL: DP flags refused). ids: the
 * served items' ids (for --item-prior; NULL: none declared). */
static int setup_coord(cli_ctx *cx, fl_setup *s, const char *const *ids, uint32_t n_items,
                       uint32_t min_clients, const char *pre, const char *dd)
{
    char b[64];
    memset(s, 0, sizeof *s);
    pvg_fl_config_default(&s->cfg);
    s->cfg.factors = (uint32_t)cli_int_range(cx, fname(pre, "factors", b, sizeof b), 32, 1, 256);
    s->n_items = n_items;
    s->q = cli_double(cx, fname(pre, "sample-rate", b, sizeof b), 1.0);
    s->rounds = (uint32_t)cli_int_range(cx, fname(pre, "rounds", b, sizeof b), 1, 0, 1000000);
    if (cli_has(cx, fname(pre, "clip", b, sizeof b))) {
        s->cfg.clip = cli_double(cx, b, 1.0);
        if (!(s->cfg.clip > 0 && s->cfg.clip <= 1e6)) {
            fprintf(stderr, "privguide: --%s wants 0 < C <= 1e6\n", b);
            return CLI_EXIT_USAGE;
        }
    }
    /* the item update and the server's step (docs/federated.md): the sufficient statistics
       under DP, the damped gradient step without; chosen on the validation splits */
    int dp_run = cli_has(cx, fname(pre, "epsilon", b, sizeof b));
    /* the SecAgg lane: 16 bits halve the upload and the masks' keystream; the update is then
       encoded mod 2^16 at a step coarse enough that the cohort's sum does not wrap, a
       quantisation error that only DP noise (far larger) makes negligible: DP runs only */
    int lane = cli_int_range(cx, fname(pre, "lane-bits", b, sizeof b), 32, 16, 32);
    if (lane != 16 && lane != 32) {
        fprintf(stderr, "privguide: --%s wants 16 or 32\n", b);
        return CLI_EXIT_USAGE;
    }
    if (lane == 16 && !dp_run) {
        char e[64];
        fprintf(stderr,
                "privguide: --%s 16 needs DP updates (--%s): a 16-bit lane encodes the update "
                "at a step coarse enough for the cohort's sum, an error only DP noise covers\n",
                b, fname(pre, "epsilon", e, sizeof e));
        return CLI_EXIT_USAGE;
    }
    s->cfg.bits = (uint32_t)lane;
    s->mask_rounds = (unsigned)cli_int_range(cx, fname(pre, "mask-rounds", b, sizeof b), 8, 8, 20);
    if (s->mask_rounds != 8 && s->mask_rounds != 12 && s->mask_rounds != 20) {
        fprintf(stderr, "privguide: --%s wants 20, 12 or 8 (ChaCha rounds of the masks)\n", b);
        return CLI_EXIT_USAGE;
    }
    const char *upd = cli_str(cx, fname(pre, "update", b, sizeof b));
    if (!upd)
        s->cfg.update = dp_run ? PVG_FL_UPDATE_STATS : PVG_FL_UPDATE_GRADIENT;
    else if (strcmp(upd, "stats") == 0)
        s->cfg.update = PVG_FL_UPDATE_STATS;
    else if (strcmp(upd, "gradient") == 0)
        s->cfg.update = PVG_FL_UPDATE_GRADIENT;
    else {
        fprintf(stderr, "privguide: --%s wants gradient or stats, got '%s'\n", b, upd);
        return CLI_EXIT_USAGE;
    }
    s->cfg.server_lr = cli_double(cx, fname(pre, "server-lr", b, sizeof b), 0.5);
    if (!(s->cfg.server_lr > 0 && s->cfg.server_lr <= 10)) {
        fprintf(stderr, "privguide: --%s wants 0 < lr <= 10\n", b);
        return CLI_EXIT_USAGE;
    }
    s->cfg.noise_ridge = cli_double(cx, fname(pre, "noise-ridge", b, sizeof b), dp_run ? 3 : 0);
    if (!(s->cfg.noise_ridge >= 0 && s->cfg.noise_ridge <= 1e6)) {
        fprintf(stderr, "privguide: --%s wants 0 <= kappa <= 1e6\n", b);
        return CLI_EXIT_USAGE;
    }
    /* the item factors as the mean of the rounds' fresh solves (statistics form) */
    if (cli_has(cx, fname(pre, "average-solves", b, sizeof b))) {
        if (s->cfg.update != PVG_FL_UPDATE_STATS) {
            char u[64];
            fprintf(stderr, "privguide: --%s needs the statistics form (--%s stats)\n", b,
                    fname(pre, "update", u, sizeof u));
            return CLI_EXIT_USAGE;
        }
        s->cfg.average_solves = 1;
    }
    /* the survivor floor: default half the expected cohort, at least 3 */
    double expect = s->q * (double)min_clients;
    uint32_t n_min_def = (uint32_t)ceil(0.5 * expect);
    if (n_min_def < 3) n_min_def = 3;
    s->n_min = (uint32_t)cli_int_range(cx, fname(pre, "min-survivors", b, sizeof b), n_min_def, 3,
                                       PVG_SECAGG_MAX_CLIENTS);
    /* the encoding leaves room for the sum of a bounded cohort only: the step is chosen for
       max_cohort clients (each adding its noise share when distributed: z sqrt(M / n_min) on
       the sum; pvg_fl_config_for_cohort), and the coordinator never sums more (its registry
       is bounded to match). A 16-bit lane defaults to twice the expected cohort plus 10 sds; a
       32-bit one to SecAgg's limit, which it holds at a step still fine enough */
    {
        double qm = s->q * (double)min_clients;
        double m_def = PVG_FL_MAX_COHORT;
        if (lane == 16) {
            m_def = ceil(2.0 * qm + 10.0 * sqrt(qm * (1 - s->q)));
            if (m_def < s->n_min) m_def = s->n_min;
            if (m_def > PVG_FL_MAX_COHORT) m_def = PVG_FL_MAX_COHORT;
        }
        s->max_cohort = (uint32_t)cli_int_range(cx, fname(pre, "max-cohort", b, sizeof b),
                                                (long long)m_def, 3, PVG_FL_MAX_COHORT);
        if (s->max_cohort < s->n_min) {
            fprintf(stderr, "privguide: --%s %u is below the survivor floor %u\n", b, s->max_cohort,
                    s->n_min);
            return CLI_EXIT_USAGE;
        }
    }
    /* the coordinator's flags (read again by coord_start), refused before any charge: a
       bad one (or cli_int_range's exit on an out-of-range one) after it would have spent
       the run's budget on nothing */
    if (cli_int_range(cx, fname(pre, "k", b, sizeof b), 0, 0, 65534) == 1) {
        fprintf(stderr, "privguide: --%s wants 0 (the plan) or 2..65534\n", b);
        return CLI_EXIT_USAGE;
    }
    {
        char g[64], x[64];
        double grace = cli_double(cx, fname(pre, "phase-grace", g, sizeof g), 0);
        double expire = cli_double(cx, fname(pre, "expire-seconds", x, sizeof x), 600);
        if (!(grace >= 0 && grace <= 86400) || !(expire > 0 && expire <= 1e9)) {
            fprintf(stderr, "privguide: fl: want 0 <= --%s <= 86400 and --%s > 0\n", g, x);
            return CLI_EXIT_USAGE;
        }
        double ps = cli_double(cx, fname(pre, "phase-seconds", g, sizeof g), 30);
        if (!(ps >= 0 && ps <= 86400)) {
            fprintf(stderr, "privguide: --%s wants 0..86400 (0: 30)\n", g);
            return CLI_EXIT_USAGE;
        }
        (void)cli_int_range(cx, fname(pre, "server-threads", g, sizeof g), 2, 1, 64);
    }
    pvg_fl_item_prior prior;
    double prior_w = 0, prior_h = 0;
    int prc = prior_setup(cx, s, ids, n_items, pre, dd, &prior, &prior_w, &prior_h);
    if (prc) return prc;
    int rc0 = setup_dp(cx, s, min_clients, lane, pre, dd);
    if (rc0) {
        pvg_fl_item_prior_free(&prior);
        return rc0;
    }
    print_dp(s);
    s->rng = pvg_rng_new_secure();
    s->tr.rng = s->rng;
    pvg_error err;
    pvg_status st = pvg_fl_model_new(&s->cfg, n_items, s->rng, &s->tr.m, &err);
    if (st == PVG_OK && prior.row_ptr)
        st = pvg_fl_model_set_item_prior(s->tr.m, &prior, prior_w, prior_h, &err);
    pvg_fl_item_prior_free(&prior);
    if (st != PVG_OK) return cli_fail("fl model", st, &err);
    return coord_start(cx, s, n_items, min_clients, pre);
}

/* setup_coord's DP part: --epsilon calibrated and charged, or the DP flags refused */
static int setup_dp(cli_ctx *cx, fl_setup *s, uint32_t min_clients, int lane, const char *pre,
                    const char *dd)
{
    char b[64];
    if (cli_has(cx, fname(pre, "epsilon", b, sizeof b))) {
        if (!dd) {
            fprintf(stderr, "privguide: --%s needs a data dir whose budget it is charged to\n", b);
            return CLI_EXIT_USAGE;
        }
        double target = cli_double(cx, b, 0);
        const char *noise = cli_str(cx, fname(pre, "noise", b, sizeof b));
        if (!noise || strcmp(noise, "distributed") == 0)
            s->cfg.dp = PVG_FL_DP_DISTRIBUTED;
        else if (strcmp(noise, "central") == 0)
            s->cfg.dp = PVG_FL_DP_CENTRAL;
        else {
            fprintf(stderr, "privguide: --%s wants central or distributed\n", b);
            return CLI_EXIT_USAGE;
        }
        s->delta =
            cli_double(cx, fname(pre, "delta", b, sizeof b), 1.0 / pow((double)min_clients, 1.1));
        if (!(target > 0 && target <= 100) || !(s->delta > 0 && s->delta < 1) ||
            !(s->q > 0 && s->q <= 1) || s->rounds == 0) {
            fprintf(stderr, "privguide: fl: DP wants 0 < epsilon <= 100, 0 < delta < 1, "
                            "0 < sample rate <= 1 and a finite number of rounds\n");
            return CLI_EXIT_USAGE;
        }
        /* distributed: each client adds sigma^2 / n_min, and the coordinator never unmasks a
           sum of fewer than n_min inputs, so each revealed sum has noise >= sigma^2 */
        s->cfg.expected_cohort = s->n_min;
        if (calibrate(&s->cfg, target, s->delta, s->q, s->rounds, &s->epsilon) != 0)
            return CLI_EXIT_USAGE;
        if (cohort_step(s, lane, pre) != 0) return CLI_EXIT_USAGE;
        int rc = charge_run(dd, s);
        if (rc) return rc;
    } else {
        const char *dpf[] = {"delta", "noise"};
        for (int i = 0; i < 2; i++)
            if (cli_has(cx, fname(pre, dpf[i], b, sizeof b))) {
                fprintf(stderr, "privguide: --%s needs --%sepsilon\n", b, pre);
                return CLI_EXIT_USAGE;
            }
        if (cohort_step(s, lane, pre) != 0) return CLI_EXIT_USAGE;
    }
    return 0;
}

/* setup_coord's coordinator, over the model s->tr.m */
static int coord_start(cli_ctx *cx, fl_setup *s, uint32_t n_items, uint32_t min_clients,
                       const char *pre)
{
    char b[64];
    pvg_error err;
    pvg_status st;
    pvg_fl_coord_options co;
    memset(&co, 0, sizeof co);
    co.d = (uint32_t)pvg_fl_update_dim(&s->cfg, n_items);
    co.sample_rate = s->q;
    co.min_clients = min_clients;
    co.min_survivors = s->n_min;
    /* 0: the SecAgg+ plan for the largest cohort (pvg_secagg_plan_params, docs/secagg.md) */
    /* k, phase-*, expire-seconds and server-threads were checked by setup_coord before any
       charge */
    co.k = (uint32_t)cli_int_range(cx, fname(pre, "k", b, sizeof b), 0, 0, 65534);
    double ps = cli_double(cx, fname(pre, "phase-seconds", b, sizeof b), 30);
    for (int i = 0; i < 4; i++)
        co.phase_seconds[i] = ps;
    co.phase_grace = cli_double(cx, fname(pre, "phase-grace", b, sizeof b), 0);
    co.expire_seconds = cli_double(cx, fname(pre, "expire-seconds", b, sizeof b), 600);
    co.max_rounds = s->rounds;
    co.lane_bits = s->cfg.bits;
    co.max_cohort = s->max_cohort;
    co.fl_config = &s->cfg; /* the coordinator checks the lane holds max_cohort clients' sum */
    co.fl_items = n_items;
    co.mask_rounds = s->mask_rounds;
    co.server_threads =
        (unsigned)cli_int_range(cx, fname(pre, "server-threads", b, sizeof b), 2, 1, 64);
    co.broadcast = tr_broadcast;
    co.apply = tr_apply;
    co.ctx = &s->tr;
    co.rng = s->rng;
    st = pvg_fl_coord_new(&co, &s->coord, &err);
    if (st != PVG_OK) return cli_fail("fl coordinator", st, &err);
    return 0;
}

static void setup_free(fl_setup *s)
{
    pvg_fl_coord_free(s->coord);
    pvg_fl_model_free(s->tr.m);
    pvg_rng_free(s->rng);
    items_free(&s->it);
}

static json_t *round_json(const pvg_fl_round_stats *r)
{
    return json_pack("{s:I, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:[i,i,i,i], s:i, s:f, s:f, "
                     "s:[f,f,f,f], s:I, s:I, s:s}",
                     "round", (json_int_t)r->round, "phase", pvg_fl_phase_name(r->phase),
                     "registered", (int)r->registered, "cohort", (int)r->cohort, "k", (int)r->k,
                     "t", (int)r->t, "lane_bits", (int)r->lane_bits, "mask_rounds",
                     (int)r->mask_rounds, "arrived", (int)r->arrived[0], (int)r->arrived[1],
                     (int)r->arrived[2], (int)r->arrived[3], "survivors", (int)r->survivors,
                     "seconds", r->seconds, "server_seconds", r->server_seconds, "phase_seconds",
                     r->phase_seconds[0], r->phase_seconds[1], r->phase_seconds[2],
                     r->phase_seconds[3], "bytes_in", (json_int_t)r->bytes_in, "bytes_out",
                     (json_int_t)r->bytes_out, "error", r->error);
}

static int start_server(cli_ctx *cx, const char *dd, pvg_fl_coord *coord, const items *it, int port,
                        pvg_server **out)
{
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = dd;
    o.bind = cli_str(cx, "bind");
    o.port = port;
    o.threads = (int)cli_int_range(cx, "threads", 4, 1, 256);
    o.monitor_off = 1;
    o.synonyms_path = "";
    o.auth_failure_rate = 0;
    o.fl = coord;
    o.fl_items = (const char *const *)it->id;
    o.fl_n_items = it->n;
    o.max_body_bytes = pvg_fl_coord_max_message(coord) + 4096;
    pvg_error err;
    pvg_status st = pvg_server_start(&o, out, &err);
    if (st != PVG_OK) return cli_fail("server", st, &err);
    return 0;
}

static int run_fl_serve(cli_ctx *cx)
{
    items it;
    if (items_read(cli_str_req(cx, "items"), &it) != 0) return CLI_EXIT_FAIL;
    fl_setup s;
    int rc =
        setup_coord(cx, &s, (const char *const *)it.id, it.n,
                    (uint32_t)cli_int_range(cx, "min-clients", 3, 3, 100000), "", cli_data_dir(cx));
    s.it = it;
    if (rc) {
        setup_free(&s);
        return rc;
    }
    pvg_server *srv = NULL;
    rc = start_server(cx, cli_data_dir(cx), s.coord, &s.it,
                      (int)cli_int_range(cx, "port", 8080, 0, 65535), &srv);
    if (rc) {
        setup_free(&s);
        return rc;
    }
    fprintf(stderr, "privguide: federated training on http://%s:%d/v1/fl/\n",
            cli_str(cx, "bind") ? cli_str(cx, "bind") : "127.0.0.1", pvg_server_port(srv));
    uint32_t max_rounds = (uint32_t)cli_int_range(cx, "rounds", 1, 0, 1000000);
    for (uint64_t r = 1; !max_rounds || r <= max_rounds; r++) {
        pvg_fl_round_stats rs;
        pvg_error err;
        pvg_status st;
        while ((st = pvg_fl_coord_wait(s.coord, r, 3600, &rs, &err)) == PVG_ERR_BUSY) {
        }
        if (st != PVG_OK) break;
        json_t *j = round_json(&rs);
        char *t = json_dumps(j, JSON_COMPACT);
        printf("%s\n", t ? t : "{}");
        fflush(stdout);
        free(t);
        json_decref(j);
    }
    /* the last round is over: the clients still polling are told so (a FINISHED state) before
       the server goes; one silent for 5 s (they poll every <= 1 s) has left, and 30 s at most */
    uint32_t told = 0, waiting = 0;
    pvg_error err;
    pvg_status st = pvg_fl_coord_wait_told(s.coord, 5, 30, &told, &waiting, &err);
    if (st == PVG_OK || st == PVG_ERR_BUSY)
        fprintf(stderr, "privguide: fl serve: finished; %u clients told, %u still polling\n", told,
                waiting);
    pvg_server_free(srv);
    setup_free(&s);
    return CLI_EXIT_OK;
}

/* ---- privguide serve --fl-items FILE: the same coordinator inside serve ---- */
int cli_fl_attach(cli_ctx *cx, pvg_server_options *o, void **state)
{
    *state = NULL;
    items it;
    if (items_read(cli_str(cx, "fl-items"), &it) != 0) return CLI_EXIT_FAIL;
    fl_setup *s = malloc(sizeof *s);
    if (!s) {
        items_free(&it);
        return CLI_EXIT_FAIL;
    }
    int rc = setup_coord(cx, s, (const char *const *)it.id, it.n,
                         (uint32_t)cli_int_range(cx, "fl-min-clients", 3, 3, 100000), "fl-",
                         cli_data_dir(cx));
    s->it = it;
    if (rc) {
        setup_free(s);
        free(s);
        return rc;
    }
    size_t need = pvg_fl_coord_max_message(s->coord) + 4096;
    if (o->max_body_bytes < need) o->max_body_bytes = need;
    o->fl = s->coord;
    o->fl_items = (const char *const *)s->it.id;
    o->fl_n_items = s->it.n;
    *state = s;
    return CLI_EXIT_OK;
}

void cli_fl_detach(void *state)
{
    if (!state) return;
    setup_free(state);
    free(state);
}

/* ---- simulate ---- */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct sim_user {
    char *id;
    FILE *f;
    long events;
} sim_user;

static int run_fl_simulate(cli_ctx *cx)
{
    uint32_t n_clients = (uint32_t)cli_int_range(cx, "clients", 10, 3, 65535);
    uint32_t procs = (uint32_t)cli_int_range(cx, "processes", 2, 1, 4096);
    const char *dataset = cli_str_req(cx, "dataset");
    double dropout = cli_double(cx, "dropout", 0);
    uint32_t rounds = (uint32_t)cli_int_range(cx, "rounds", 1, 1, 1000000);
    if (procs > n_clients) procs = n_clients;
    if (dropout < 0 || dropout >= 1) {
        fprintf(stderr, "privguide: fl simulate: --dropout wants 0 <= p < 1\n");
        return CLI_EXIT_USAGE;
    }
    char dir[] = "/tmp/privguide-fl-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "privguide: mkdtemp: %s\n", strerror(errno));
        return CLI_EXIT_FAIL;
    }
    char path[1024], dd[512], keyf[512];
    snprintf(dd, sizeof dd, "%s/data", dir);
    snprintf(keyf, sizeof keyf, "%s/keys", dir);
    int rc = CLI_EXIT_FAIL;
    /* split the dataset: the first n_clients users, each their own file */
    FILE *in = fopen(dataset, "r");
    if (!in) {
        fprintf(stderr, "privguide: %s: %s\n", dataset, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    sim_user *u = calloc(n_clients, sizeof *u);
    uint32_t nu = 0;
    char **iid = NULL;
    size_t n_iid = 0, cap_iid = 0;
    char *line = NULL;
    size_t lcap = 0;
    long ln = 0;
    while (getline(&line, &lcap, in) > 0) {
        ln++;
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (!j) {
            fprintf(stderr, "privguide: %s:%ld:%d: %s\n", dataset, ln, je.column, je.text);
            fclose(in);
            goto out;
        }
        const char *user = json_string_value(json_object_get(j, "user"));
        const char *item = json_string_value(json_object_get(j, "item"));
        if (user && item) {
            uint32_t k = 0;
            while (k < nu && strcmp(u[k].id, user) != 0)
                k++;
            if (k == nu && nu < n_clients) {
                u[nu].id = strdup(user);
                snprintf(path, sizeof path, "%s/client-%u.jsonl", dir, nu);
                u[nu].f = fopen(path, "w");
                nu++;
            }
            if (k < nu) {
                fputs(line, u[k].f);
                u[k].events++;
                if (n_iid == cap_iid) {
                    cap_iid = cap_iid ? cap_iid * 2 : 1024;
                    iid = realloc(iid, sizeof *iid * cap_iid);
                }
                iid[n_iid++] = strdup(item);
            }
        }
        json_decref(j);
    }
    fclose(in);
    for (uint32_t k = 0; k < nu; k++)
        fclose(u[k].f);
    if (nu < 3) {
        fprintf(stderr, "privguide: %s: fewer than 3 users with item events\n", dataset);
        goto out;
    }
    {
        /* the item list of the simulation: the distinct items of its clients */
        items it;
        memset(&it, 0, sizeof it);
        qsort(iid, n_iid, sizeof *iid, cmp_str);
        snprintf(path, sizeof path, "%s/items.txt", dir);
        FILE *f = fopen(path, "w");
        for (size_t i = 0; i < n_iid; i++)
            if (i == 0 || strcmp(iid[i], iid[i - 1]) != 0) {
                fprintf(f, "%s\n", iid[i]);
                it.n++;
            }
        fclose(f);
        (void)it;
    }
    {
        items it;
        if (items_read(path, &it) != 0) goto out;
        uint32_t n_items = it.n;
        items_free(&it);
        pvg_store_init_options io;
        memset(&io, 0, sizeof io);
        io.key_file = keyf;
        pvg_error err;
        pvg_status st = pvg_store_init(dd, &io, &err);
        pvg_store *store = NULL;
        pvg_store_open_options oo = {keyf};
        if (st == PVG_OK) st = pvg_store_open_with(dd, &oo, &store, &err);
        if (st != PVG_OK) {
            rc = cli_fail("store", st, &err);
            goto out;
        }
        pvg_rng *drng = pvg_rng_new_secure();
        FILE **cf = calloc(procs, sizeof *cf);
        for (uint32_t p = 0; p < procs; p++) {
            snprintf(path, sizeof path, "%s/clients-%u.tsv", dir, p);
            cf[p] = fopen(path, "w");
            fchmod(fileno(cf[p]), 0600);
        }
        uint32_t n_drop = (uint32_t)(dropout * nu + 0.5);
        for (uint32_t k = 0; k < nu && st == PVG_OK; k++) {
            char *tok = NULL;
            pvg_principal pr;
            st = pvg_auth_token_issue(store, u[k].id, 86400, 0, &tok, &pr, &err);
            if (st != PVG_OK) break;
            int drop = k < n_drop ? 1 + (int)pvg_rng_uniform(drng, 4) : 0;
            fprintf(cf[k % procs], "%s\t%s/client-%u.jsonl\t%d\n", tok, dir, k, drop);
            pvg_auth_credential_free(tok);
        }
        for (uint32_t p = 0; p < procs; p++)
            fclose(cf[p]);
        free(cf);
        pvg_rng_free(drng);
        pvg_store_free(store);
        if (st != PVG_OK) {
            rc = cli_fail("token", st, &err);
            goto out;
        }
        fl_setup s;
        if ((rc = setup_coord(cx, &s, NULL, n_items, nu, "", NULL)) != 0) {
            setup_free(&s);
            goto out;
        }
        setenv(PVG_ENV_KEY_FILE, keyf, 1);
        pvg_server *srv = NULL;
        if ((rc = start_server(cx, dd, s.coord, &s.it, 0, &srv)) != 0) {
            setup_free(&s);
            goto out;
        }
        char url[64], rs_[16], items_path[1024];
        snprintf(url, sizeof url, "http://127.0.0.1:%d", pvg_server_port(srv));
        snprintf(rs_, sizeof rs_, "%u", rounds);
        snprintf(items_path, sizeof items_path, "%s/items.txt", dir);
        pid_t *pid = calloc(procs, sizeof *pid);
        char self[4096];
        ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
        self[sl > 0 ? sl : 0] = 0;
        for (uint32_t p = 0; p < procs; p++) {
            char cfp[1024];
            snprintf(cfp, sizeof cfp, "%s/clients-%u.tsv", dir, p);
            char *argv[] = {self, "fl",       "client",   "--server",
                            url,  "--items",  items_path, "--clients-file",
                            cfp,  "--rounds", rs_,        "--allow-no-dp",
                            NULL};
            char outp[1100];
            snprintf(outp, sizeof outp, "%s/proc-%u.json", dir, p);
            posix_spawn_file_actions_t fa;
            posix_spawn_file_actions_init(&fa);
            posix_spawn_file_actions_addopen(&fa, 1, outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (posix_spawn(&pid[p], self, &fa, NULL, argv, environ) != 0) pid[p] = 0;
            posix_spawn_file_actions_destroy(&fa);
        }
        json_t *out = json_object(), *rarr = json_array();
        rc = CLI_EXIT_OK;
        for (uint64_t r = 1; r <= rounds; r++) {
            pvg_fl_round_stats rst;
            if (pvg_fl_coord_wait(s.coord, r, 3600, &rst, &err) != PVG_OK) {
                rc = cli_fail("round", PVG_ERR_BUSY, &err);
                break;
            }
            json_array_append_new(rarr, round_json(&rst));
        }
        for (uint32_t p = 0; p < procs; p++) {
            int ws = 0;
            if (pid[p] && waitpid(pid[p], &ws, 0) == pid[p] && WIFEXITED(ws) &&
                WEXITSTATUS(ws) == 0)
                continue;
            /* clients that dropped on purpose still exit 0; anything else fails */
            rc = CLI_EXIT_FAIL;
            fprintf(stderr, "privguide: client process %u failed\n", p);
        }
        free(pid);
        /* the clients' own figures (each process printed a JSON array) */
        double *secs = calloc(nu, sizeof *secs);
        double up = 0, down = 0;
        uint32_t ns = 0, done = 0;
        for (uint32_t p = 0; p < procs && secs; p++) {
            snprintf(path, sizeof path, "%s/proc-%u.json", dir, p);
            json_t *a = json_load_file(path, 0, NULL);
            size_t i;
            json_t *v;
            json_array_foreach(a, i, v)
            {
                if (ns >= nu) break;
                secs[ns++] = json_real_value(json_object_get(v, "compute_seconds"));
                up += (double)json_integer_value(json_object_get(v, "bytes_up"));
                down += (double)json_integer_value(json_object_get(v, "bytes_down"));
                done += (uint32_t)json_integer_value(json_object_get(v, "rounds"));
            }
            json_decref(a);
        }
        if (secs && ns) {
            qsort(secs, ns, sizeof *secs, cmp_double);
            json_object_set_new(out, "client_compute_seconds_p50", json_real(secs[ns / 2]));
            json_object_set_new(out, "client_compute_seconds_max", json_real(secs[ns - 1]));
            json_object_set_new(out, "bytes_up_per_client", json_real(up / ns));
            json_object_set_new(out, "bytes_down_per_client", json_real(down / ns));
            json_object_set_new(out, "client_rounds_done", json_integer(done));
        }
        free(secs);
        json_object_set_new(out, "clients", json_integer(nu));
        json_object_set_new(out, "processes", json_integer(procs));
        json_object_set_new(out, "items", json_integer(n_items));
        json_object_set_new(out, "factors", json_integer(s.cfg.factors));
        json_object_set_new(out, "d", json_integer((json_int_t)pvg_fl_update_dim(&s.cfg, n_items)));
        json_object_set_new(out, "rounds", rarr);
        char *t = json_dumps(out, JSON_COMPACT);
        printf("%s\n", t ? t : "{}");
        free(t);
        json_decref(out);
        pvg_server_free(srv);
        setup_free(&s);
    }
out:
    free(line);
    for (size_t i = 0; i < n_iid; i++)
        free(iid[i]);
    free(iid);
    for (uint32_t k = 0; k < nu; k++)
        free(u[k].id);
    free(u);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    if (system(path) != 0) fprintf(stderr, "privguide: could not remove %s\n", dir);
    return rc;
}

static const cli_flag serve_flags[] = {
    {"items", CLI_STR, "FILE", "the public item list, one id a line (index = line)"},
    {"port", CLI_INT, "N", "TCP port (default 8080; 0: ephemeral)"},
    {"bind", CLI_STR, "ADDR", "IPv4 address (default 127.0.0.1)"},
    {"threads", CLI_INT, "N", "HTTP worker threads (default 4)"},
    {"factors", CLI_INT, "K", "factors (default 32)"},
    {"rounds", CLI_INT, "N", "rounds to run, 0 unlimited (default 1)"},
    {"sample-rate", CLI_DOUBLE, "Q", "Poisson sampling rate per round (default 1)"},
    {"min-clients", CLI_INT, "N", "registered clients before the first round (default 3)"},
    {"k", CLI_INT, "K", "SecAgg+ neighbours (default 0: planned from the cohort, docs/secagg.md)"},
    {"phase-seconds", CLI_DOUBLE, "S", "deadline of each phase (default 30)"},
    {"phase-grace", CLI_DOUBLE, "S",
     "close a phase once its quorum is in and no message came for S s (default 0: off)"},
    {"expire-seconds", CLI_DOUBLE, "S", "forget a client not seen for S s (default 600)"},
    {"server-threads", CLI_INT, "N", "unmasking threads (default 2)"},
    {"lane-bits", CLI_INT, "B",
     "SecAgg lane: 32 (default) or 16 (half the upload and mask work; DP runs only, "
     "docs/fl-protocol.md)"},
    {"mask-rounds", CLI_INT, "R",
     "ChaCha rounds of the SecAgg masks: 8 (default), 12 or 20 (docs/secagg.md)"},
    {"max-cohort", CLI_INT, "N",
     "the most clients a round sums, the encoding's room before its sum wraps (default with "
     "--lane-bits 16: 2 q n + 10 sd, n = --min-clients; with 32: 65535; the registry is bounded "
     "to match)"},
    {"epsilon", CLI_DOUBLE, "E",
     "client-level DP for the whole run, charged once (default: no DP)"},
    {"delta", CLI_DOUBLE, "D", "DP delta (default 1/n^1.1, n = --min-clients)"},
    {"noise", CLI_STR, "MODE", "distributed (default) or central"},
    {"clip", CLI_DOUBLE, "C", "L2 bound of one client's update (default 1000)"},
    {"update", CLI_STR, "FORM",
     "item update: stats (default with DP) or gradient (default without)"},
    {"server-lr", CLI_DOUBLE, "LR", "server step of the gradient form (default 0.5)"},
    {"noise-ridge", CLI_DOUBLE, "KAPPA",
     "DP: each item's ridge gains KAPPA noise stds (default 3; server only)"},
    {"average-solves", CLI_BOOL, NULL,
     "statistics form: item factors are the mean of the rounds' solves (averages the "
     "rounds' DP noise; pays with 4-6 rounds)"},
    {"item-prior", CLI_STR, "SOURCE",
     "DP, statistics form: the noise ridge pulls each item toward its public neighbours in the "
     "declared catalogue: SOURCE titles or descriptions (as text), or categories (the "
     "descriptions as '|' or ','-separated labels) (docs/federated.md; server only, no budget)"},
    {"item-prior-weight", CLI_DOUBLE, "W", "the item prior's weight, 0 < W <= 1 (default 1)"},
    {"item-prior-count", CLI_DOUBLE, "H",
     "the item prior weighs a neighbour by its noisy count n / (n + H) (default 20; 0: off)"},
    {"min-survivors", CLI_INT, "N",
     "survivor floor: fewer masked inputs abort the round "
     "(default max(3, half the expected cohort))"},
    {0}};

static const cli_flag client_flags[] = {
    {"server", CLI_STR, "URL", "the server, http://host:port"},
    {"token", CLI_STR, "T", "the shopper token"},
    {"data", CLI_STR, "FILE", "the shopper's events (native JSONL); stays on this machine"},
    {"items", CLI_STR, "FILE", "the public item list the server trains (index = line)"},
    {"clients-file", CLI_STR, "FILE", "many clients in threads: TOKEN<TAB>DATA[<TAB>DROP] lines"},
    {"rounds", CLI_INT, "N", "rounds to take part in, 0 until the server finishes"},
    {"drop-phase", CLI_INT, "P", "simulation: stop before phase P (1..4) of the first round"},
    {"timeout", CLI_DOUBLE, "S", "give up after S seconds (default 600)"},
    {"allow-no-dp", CLI_BOOL, NULL, "take part in rounds whose broadcast asks for no DP noise"},
    {"max-epsilon", CLI_DOUBLE, "E", "refuse noise whose epsilon exceeds E (default 10)"},
    {"dp-delta", CLI_DOUBLE, "D", "the delta of that check (default 1e-5)"},
    {"dp-sample-rate", CLI_DOUBLE, "Q", "the sampling rate assumed (default 1: no amplification)"},
    {"dp-rounds", CLI_INT, "R", "rounds assumed, at least the current round (default 1)"},
    {0}};

static const cli_flag sim_flags[] = {
    {"clients", CLI_INT, "N", "clients: the first N users of the dataset (default 10)"},
    {"processes", CLI_INT, "P", "client processes (default 2)"},
    {"dataset", CLI_STR, "FILE", "events in the native JSONL"},
    {"dropout", CLI_DOUBLE, "P", "fraction of clients that drop (each in a random phase)"},
    {"factors", CLI_INT, "K", "factors (default 32)"},
    {"rounds", CLI_INT, "N", "rounds (default 1)"},
    {"k", CLI_INT, "K", "SecAgg+ neighbours (default 0: planned from the cohort, docs/secagg.md)"},
    {"phase-seconds", CLI_DOUBLE, "S", "deadline of each phase (default 30)"},
    {"phase-grace", CLI_DOUBLE, "S",
     "close a phase once its quorum is in and no message came for S s (default 0: off)"},
    {"server-threads", CLI_INT, "N", "unmasking threads (default 2)"},
    {"threads", CLI_INT, "N", "HTTP worker threads (default 4)"},
    {"bind", CLI_STR, "ADDR", "IPv4 address (default 127.0.0.1)"},
    {"sample-rate", CLI_DOUBLE, "Q", "Poisson sampling rate per round (default 1)"},
    {0}};

const cli_command cli_cmds_fl[] = {
    {"fl serve", NULL, 0, 0, "serve federated training rounds under /v1/fl/",
     "The privguide server of the data dir (shopper tokens authenticate the clients) with the "
     "round coordinator behind /v1/fl/. Prints one JSON line per round (aggregates only). "
     "After its last round it stays until every client still polling was told it finished "
     "(one silent for 5 s has left; 30 s at most). Protocol: docs/fl-protocol.md.",
     serve_flags, run_fl_serve},
    {"fl client", NULL, 0, 0, "take part in federated training as a shopper's client",
     "Joins with the shopper token, computes its update from its own events and sends it "
     "only through SecAgg+; its user factor and events never leave this process. Prints one "
     "JSON object per client (rounds, refused, refusal, status). Exit status 0 when every "
     "client ran its --rounds or saw the server finish, rounds it refused under its own rules "
     "included (refused > 0, the last reason on stderr and in `refusal`: refusing is the client "
     "working, not failing); 1 when a client failed (the server unreachable or gone before it "
     "said it finished, a malformed answer, the token refused, --timeout); 2 bad usage.",
     client_flags, run_fl_client},
    {"fl simulate", NULL, 0, 0, "federated training with real client processes on loopback",
     "Splits the dataset's first N users into N clients, issues them tokens in a temporary "
     "store, runs the server in this process and P client processes; prints JSON.",
     sim_flags, run_fl_simulate},
    {0}};
