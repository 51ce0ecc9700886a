/*
 * cmd_model.c - the model commands of the CLI (table cli_cmds_model):
 * `train` (from the store or a file), `recommend` (top-k for a user, items
 * similar to an item, or popular items from a model file) and `eval` (the
 * offline evaluation harness, JSON metrics).
 */
#include "cli.h"

#include <privguide/access.h>
#include <privguide/eval.h>
#include <privguide/ledger.h>
#include <privguide/model.h>
#include <privguide/store.h>

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define DP_FLAGS                                                                                   \
    {"epsilon", CLI_DOUBLE, "E",                                                                   \
     "train with shopper-level (E, --delta)-DP (popularity, itemknn, ease; docs/models.md \"DP "   \
     "training\"); from the store, E is charged to its budget before the model is written"},       \
        {"delta", CLI_DOUBLE, "D",                                                                 \
         "DP delta (default 1e-6; 0: pure DP by Laplace noise, popularity and itemknn only)"},     \
        {"max-items", CLI_INT, "M", "DP: items kept per shopper (default: the model's)"},          \
        {"noise-multiplier", CLI_DOUBLE, "S",                                                      \
         "DP, experts: noise std / sensitivity (the epsilon it gives must fit --epsilon)"},        \
    {                                                                                              \
        "dp-items", CLI_STR, "FILE",                                                               \
            "DP on --input: the public item vocabulary, one id a line, optionally followed by a "  \
            "TAB and the item's catalogue title (ease uses the titles as a prior; default: DP "    \
            "partition selection over the file's items, a tenth of epsilon); from the store the "  \
            "declared catalogue is the list (catalog import)"                                      \
    }

static int read_id_list(cli_ctx *c, const char *path, int keep_tabs, char ***ids_out, size_t *n_out,
                        char **buf_out, long **lines_out);
static long long int_opt(cli_ctx *c, const char *flag, long long def, long long lo, long long hi);

/* The DP flags into p (usage errors exit); *ids / *buf own a --dp-items
 * list (free both after training). */
static void dp_setup(cli_ctx *c, pvg_train_params *p, char ***ids, char **buf)
{
    *ids = NULL;
    *buf = NULL;
    if (!cli_has(c, "epsilon")) {
        if (cli_has(c, "delta") || cli_has(c, "max-items") || cli_has(c, "noise-multiplier") ||
            cli_has(c, "dp-items"))
            cli_usage_error(c, "--delta, --max-items, --noise-multiplier and --dp-items need "
                               "--epsilon");
        return;
    }
    p->dp_epsilon = cli_double(c, "epsilon", 0);
    if (!(p->dp_epsilon > 0) || isinf(p->dp_epsilon))
        cli_usage_error(c, "--epsilon must be a finite number > 0");
    p->dp_delta = cli_double(c, "delta", 1e-6);
    if (!(p->dp_delta >= 0 && p->dp_delta < 1)) cli_usage_error(c, "--delta must be in [0, 1)");
    p->dp_max_items = (int)int_opt(c, "max-items", 0, 1, 1024);
    p->dp_noise_multiplier = cli_double(c, "noise-multiplier", 0);
    if (!(p->dp_noise_multiplier >= 0) || isinf(p->dp_noise_multiplier))
        cli_usage_error(c, "--noise-multiplier must be >= 0");
    const char *items = cli_str(c, "dp-items");
    if (items && !cli_has(c, "input"))
        cli_usage_error(c, "--dp-items is for --input: from the store, the vocabulary and its "
                           "titles are the declared catalogue (privguide catalog import FILE)");
    if (items) cli_dp_items_load(c, items, p, ids, buf);
}

/* an id and its entry in a list, ordered by id then entry */
typedef struct id_at {
    const char *id;
    size_t at;
} id_at;
static int id_at_cmp(const void *a, const void *b)
{
    const id_at *x = a, *y = b;
    int r = strcmp(x->id, y->id);
    return r ? r : (x->at > y->at) - (x->at < y->at);
}

void cli_dp_items_load(cli_ctx *c, const char *items, pvg_train_params *p, char ***ids, char **buf)
{
    size_t n;
    long *lines = NULL; /* each entry's line in the file, for messages */
    if (read_id_list(c, items, 1, ids, &n, buf, &lines)) exit(CLI_EXIT_FAIL);
    /* "id<TAB>title": the item's public catalogue text beside it; the
     * titles live after the n ids in the same array (freed with it) */
    char **both = realloc(*ids, (2 * n + 1) * sizeof *both);
    if (!both) exit(cli_fail("list", PVG_ERR_NOMEM, NULL));
    *ids = both;
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        char *id = both[i], *tab = strchr(id, '\t'), *title = NULL;
        if (tab) {
            *tab = 0;
            for (title = tab + 1; *title == ' ' || *title == '\t'; title++)
                ;
            size_t tl = strlen(title);
            while (tl && (title[tl - 1] == ' ' || title[tl - 1] == '\t'))
                title[--tl] = 0;
        }
        size_t il = strlen(id); /* the id without the spaces around it */
        while (il && id[il - 1] == ' ')
            id[--il] = 0;
        if (!il) {
            cli_warn("%s:%ld: id: an empty item id before its TAB (expected id<TAB>title)", items,
                     lines[i]);
            exit(CLI_EXIT_FAIL);
        }
        both[i] = id;
        both[n + i] = title && *title ? title : NULL;
        any |= both[n + i] != NULL;
    }
    if (n == 0) {
        cli_warn("%s: no item id (expected one id a line, with an optional TAB and title; blank "
                 "lines and #-comments are skipped)",
                 items);
        exit(CLI_EXIT_FAIL);
    }
    /* a public list names each item once: a repeat is named with both lines */
    id_at *ord = malloc(n * sizeof *ord);
    if (!ord) exit(cli_fail("list", PVG_ERR_NOMEM, NULL));
    for (size_t i = 0; i < n; i++)
        ord[i] = (id_at){both[i], i};
    qsort(ord, n, sizeof *ord, id_at_cmp);
    size_t dup = n, first = 0;
    for (size_t i = 1, g = 0; i < n; i++) {
        if (strcmp(ord[i].id, ord[g].id) != 0)
            g = i;
        else if (ord[i].at < dup) {
            dup = ord[i].at;
            first = ord[g].at;
        }
    }
    free(ord);
    if (dup < n) {
        cli_warn("%s:%ld: id: '%s' is listed twice (first on line %ld)", items, lines[dup],
                 both[dup], lines[first]);
        exit(CLI_EXIT_FAIL);
    }
    free(lines);
    p->dp_items = (const char *const *)both;
    p->dp_n_items = n;
    if (any) p->dp_item_titles = (const char *const *)(both + n);
}

static json_t *dp_json(const pvg_model_dp_info *d)
{
    json_t *o = json_object();
    json_object_set_new(o, "epsilon", json_real(d->epsilon));
    json_object_set_new(o, "delta", json_real(d->delta));
    json_object_set_new(o, "mechanism", json_string(d->mechanism));
    json_object_set_new(o, "max_items", json_integer(d->max_items));
    json_object_set_new(o, "sensitivity", json_real(d->sensitivity));
    json_object_set_new(o, "noise_multiplier", json_real(d->noise_multiplier));
    if (d->clip > 0) json_object_set_new(o, "clip", json_real(d->clip));
    json_object_set_new(o, "vocabulary", json_string(pvg_dp_vocabulary_name(d->vocabulary)));
    return o;
}

static json_t *recency_json(const pvg_model_recency *r)
{
    if (!r->on) return json_null();
    char when[32];
    json_t *o = json_object();
    /* a present read from the data is not recorded (a shopper's purchase
     * time): null, with present_from_data */
    json_object_set_new(o, "present",
                        r->present_from_data
                            ? json_null()
                            : json_string(cli_utc_time(r->present, when, sizeof when)));
    if (r->present_from_data) json_object_set_new(o, "present_from_data", json_true());
    json_object_set_new(o, "halflife_days", json_real(r->halflife_days));
    json_object_set_new(o, "row_norm", json_boolean(r->row_norm));
    json_object_set_new(o, "recent_days", json_real(r->recent_days));
    json_object_set_new(o, "recent_beta", json_real(r->recent_beta));
    if (r->recent_share > 0) json_object_set_new(o, "recent_share", json_real(r->recent_share));
    json_object_set_new(o, "recent_unit", json_boolean(r->recent_unit));
    return o;
}

static void recency_print(const pvg_model_recency *r)
{
    char when[32];
    if (!r->on) {
        printf("recency      none\n");
        return;
    }
    printf("recency      present %s, half-life %g days%s, recent buyers %g days beta %g%s\n",
           r->present_from_data ? "one second after the latest event (not recorded)"
                                : cli_utc_time(r->present, when, sizeof when),
           r->halflife_days, r->row_norm ? " (row-normalised)" : "", r->recent_days, r->recent_beta,
           r->recent_unit ? " (unit rows)" : "");
    if (r->recent_share > 0)
        printf("             recent buyers' share of rho %g\n", r->recent_share);
}

static const char model_help[] =
    "Models: popularity, itemknn (cosine, shrinkage, top-N neighbours), ials (implicit ALS, "
    "Rendle et al. 2021 recipe), ease (Steck 2019, up to 30000 items), bpr (BPR-MF, lock-free "
    "SGD).\nEach event adds its type's weight to its (user, item) cell; repeats sum, returns "
    "subtract, cells <= 0 are dropped. docs/models.md has the details.\n"
    "With --epsilon from the store, the items and the titles of DP-EASE's text prior come from "
    "the declared catalogue (privguide catalog import FILE); without one, the store's catalog "
    "items and no text.";

/* A flag's value when given (range-checked, exit 2 otherwise), else def. */
static long long int_opt(cli_ctx *c, const char *flag, long long def, long long lo, long long hi)
{
    return cli_has(c, flag) ? cli_int_range(c, flag, def, lo, hi) : def;
}

/* The tunable hyperparameters: name, field, kind (0 double, 1 int), the
 * model they belong to, and the random search's range (log-uniform for
 * doubles, uniform for ints; lo == hi: read from a params file, not
 * searched). */
typedef struct hyper_def {
    const char *name;
    size_t off;
    int is_int;
    pvg_model_type model;
    double lo, hi;
} hyper_def;

#define HOFF(f) offsetof(pvg_train_params, f)
static const hyper_def HYPERS[] = {
    {"alpha", HOFF(alpha), 0, PVG_MODEL_IALS, 0.1, 30},
    {"reg", HOFF(reg), 0, PVG_MODEL_IALS, 1e-3, 1},
    {"alpha0", HOFF(alpha0), 0, PVG_MODEL_IALS, 0, 0},
    {"nu", HOFF(nu), 0, PVG_MODEL_IALS, 0, 0},
    {"factors", HOFF(factors), 1, PVG_MODEL_IALS, 0, 0},
    {"epochs", HOFF(epochs), 1, PVG_MODEL_IALS, 0, 0},
    {"lambda", HOFF(ease_lambda), 0, PVG_MODEL_EASE, 1, 5000},
    {"neighbors", HOFF(neighbors), 1, PVG_MODEL_ITEMKNN, 20, 1000},
    {"shrink", HOFF(shrink), 0, PVG_MODEL_ITEMKNN, 0.1, 200},
    {"lr", HOFF(lr), 0, PVG_MODEL_BPR, 0.005, 0.3},
    {"reg", HOFF(reg), 0, PVG_MODEL_BPR, 1e-4, 0.3},
    {"factors", HOFF(factors), 1, PVG_MODEL_BPR, 0, 0},
    {"epochs", HOFF(epochs), 1, PVG_MODEL_BPR, 0, 0},
};
#define N_HYPERS (sizeof HYPERS / sizeof HYPERS[0])

static double hyper_get(const pvg_train_params *p, const hyper_def *h)
{
    const char *b = (const char *)p + h->off;
    return h->is_int ? (double)*(const int *)b : *(const double *)b;
}

static void hyper_set(pvg_train_params *p, const hyper_def *h, double v)
{
    char *b = (char *)p + h->off;
    if (h->is_int)
        *(int *)b = (int)llround(v);
    else
        *(double *)b = v;
}

/* Applies a `tune` result file ({"model": M, "params": {...}}) to p. */
static void apply_params_file(cli_ctx *c, const char *path, pvg_model_type t, pvg_train_params *p)
{
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) cli_usage_error(c, "--params %s:%d: %s", path, je.line, je.text);
    const char *m = json_string_value(json_object_get(root, "model"));
    pvg_model_type mt;
    pvg_error err;
    if (!m || pvg_model_type_parse(m, &mt, &err) != PVG_OK || mt != t)
        cli_usage_error(c, "--params %s: written for model '%s', not %s", path, m ? m : "?",
                        pvg_model_type_name(t));
    json_t *ps = json_object_get(root, "params");
    if (!json_is_object(ps)) cli_usage_error(c, "--params %s: no \"params\" object", path);
    const char *key;
    json_t *v;
    json_object_foreach(ps, key, v)
    {
        const hyper_def *h = NULL;
        for (size_t i = 0; i < N_HYPERS && !h; i++)
            if (HYPERS[i].model == t && strcmp(HYPERS[i].name, key) == 0) h = &HYPERS[i];
        if (!h || !json_is_number(v))
            cli_usage_error(c, "--params %s: params.%s: not a number of a %s hyperparameter", path,
                            key, pvg_model_type_name(t));
        hyper_set(p, h, json_number_value(v));
    }
    json_decref(root);
}

static pvg_status parse_params(cli_ctx *c, pvg_model_type t, pvg_train_params *p, pvg_error *err)
{
    pvg_train_params_default(t, p);
    if (cli_str(c, "params")) apply_params_file(c, cli_str(c, "params"), t, p);
    p->threads = (int)int_opt(c, "threads", 1, 1, 256);
    p->seed = (uint64_t)int_opt(c, "seed", 42, 0, (long long)1 << 53);
    p->factors = (int)int_opt(c, "factors", p->factors, 1, 4096);
    p->epochs = (int)int_opt(c, "epochs", p->epochs, 1, PVG_TRAIN_MAX_EPOCHS);
    p->reg = cli_double(c, "reg", p->reg);
    p->alpha0 = cli_double(c, "alpha0", p->alpha0);
    p->alpha = cli_double(c, "alpha", p->alpha);
    if (cli_has(c, "alpha0") && !(p->alpha0 >= 0)) cli_usage_error(c, "--alpha0 must be >= 0");
    if (cli_has(c, "alpha") && !(p->alpha > 0)) cli_usage_error(c, "--alpha must be > 0");
    p->nu = cli_double(c, "nu", p->nu);
    p->confidence = cli_double(c, "confidence", p->confidence);
    p->cg_steps = (int)int_opt(c, "cg-steps", p->cg_steps, 0, 1000);
    p->lr = cli_double(c, "lr", p->lr);
    p->ease_lambda = cli_double(c, "lambda", p->ease_lambda);
    p->neighbors = (int)int_opt(c, "neighbors", p->neighbors, 1, 100000);
    p->shrink = cli_double(c, "shrink", p->shrink);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    double ram_mb = pages > 0 && psz > 0 ? (double)pages * (double)psz / 1048576.0 : 0;
    p->max_memory_mb = cli_double(c, "max-memory", 0.8 * ram_mb);
    if (!(p->max_memory_mb >= 0)) cli_usage_error(c, "--max-memory must be >= 0 (0: no limit)");
    if ((cli_has(c, "reg") && !(p->reg >= 0)) || p->nu < 0 || p->confidence < 0 || p->shrink < 0)
        cli_usage_error(c, "--reg, --nu, --confidence and --shrink must be >= 0");
    if ((cli_has(c, "lr") && !(p->lr > 0)) || (cli_has(c, "lambda") && !(p->ease_lambda > 0)))
        cli_usage_error(c, "--lr and --lambda must be > 0");
    (void)err;
    return PVG_OK;
}

/* Loads the dataset from --input/--format or from the store. *store_out
 * (may be NULL) receives the open store when the store was used. */
int cli_load_dataset(cli_ctx *c, pvg_dataset **ds, pvg_store **store_out, int quiet)
{
    pvg_error err;
    pvg_error_clear(&err);
    pvg_event_weights w;
    pvg_event_weights_default(&w);
    const char *ws = cli_str(c, "weights");
    if (ws && pvg_event_weights_parse(ws, &w, &err) != PVG_OK) cli_usage_error(c, "%s", err.text);
    if (cli_has(c, "search-weight")) {
        w.w[PVG_EVENT_SEARCH] = cli_double(c, "search-weight", PVG_SEARCH_WEIGHT_DEFAULT);
        if (!(w.w[PVG_EVENT_SEARCH] >= 0) || w.w[PVG_EVENT_SEARCH] > 100)
            cli_usage_error(c, "--search-weight: want a number 0..100");
    }
    const char *input = cli_str(c, "input");
    pvg_dataset_load_stats ls;
    pvg_status st;
    if (input) {
        const char *fs = cli_str(c, "format");
        if (!fs) cli_usage_error(c, "--input needs --format");
        pvg_format fmt;
        if (pvg_format_parse(fs, &fmt) != PVG_OK)
            cli_usage_error(c,
                            "unknown format '%s' (online-retail, movielens, amazon-reviews, "
                            "retailrocket, jsonl, tsv)",
                            fs);
        st = pvg_dataset_load_file(input, fmt, NULL, &w, ds, &ls, &err);
        if (st != PVG_OK) return cli_fail("input", st, &err);
        if (!quiet && ls.rejects)
            cli_warn("%s: %lld rows rejected by the reader (not used)", input, ls.rejects);
        return 0;
    }
    if (cli_has(c, "format")) cli_usage_error(c, "--format needs --input");
    pvg_store *s;
    st = pvg_store_open(cli_data_dir(c), &s, &err);
    if (st != PVG_OK) return cli_fail("store", st, &err);
    pvg_access g;
    pvg_access_init(&g, s, "cli");
    st = pvg_access_training_dataset(&g, &w, ds, &ls, &err);
    if (st != PVG_OK) {
        pvg_store_free(s);
        return cli_fail("store", st, &err);
    }
    if (store_out)
        *store_out = s;
    else
        pvg_store_free(s);
    return 0;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
    return ru.ru_maxrss / 1024.0;
}

static void progress_bar(void *ctx, const pvg_train_progress *p)
{
    (void)ctx;
    int width = 30, done = p->epochs ? p->epoch * width / p->epochs : width;
    double eta = p->epoch ? p->elapsed_seconds / p->epoch * (p->epochs - p->epoch) : 0;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < done ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r[%s] epoch %d/%d  loss %-12.6g %.2fs/epoch  ETA %.0fs ", bar, p->epoch,
            p->epochs, p->loss, p->epoch_seconds, eta);
    if (p->epoch == p->epochs) fputc('\n', stderr);
    fflush(stderr);
}

static json_t *epochs_json(const pvg_train_stats *st)
{
    json_t *a = json_array();
    for (int i = 0; i < st->n_epochs; i++)
        json_array_append_new(a, json_real(st->epoch_seconds[i]));
    return a;
}

static void print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    if (s) {
        puts(s);
        free(s);
    }
    json_decref(o);
}

/* EASE: the memory estimate, said before the work starts (the library
 * refuses above p->max_memory_mb). `what` qualifies it (eval: the whole
 * file, an upper bound of the training split). */
static void say_estimate(const pvg_dataset *ds, const pvg_train_params *p, const char *what)
{
    if (p->type != PVG_MODEL_EASE || p->dp_epsilon > 0) return;
    pvg_train_estimate e;
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_model_memory_estimate(ds, p, &e, &err) != PVG_OK) return;
    fprintf(stderr,
            "ease: %s form over %zu users x %zu items with interactions%s: about %.0f MiB "
            "(limit %.0f MiB%s)\n",
            e.form, e.users, e.items, what, e.bytes / 1048576.0, p->max_memory_mb,
            p->max_memory_mb > 0 && e.bytes > p->max_memory_mb * 1048576.0 ? ": refused" : "");
}

static int run_train(cli_ctx *c)
{
    const char *ms = cli_str_req(c, "model");
    const char *out = cli_str_req(c, "out");
    pvg_error err;
    pvg_error_clear(&err);
    pvg_model_type t;
    if (pvg_model_type_parse(ms, &t, &err) != PVG_OK) cli_usage_error(c, "%s", err.text);
    pvg_train_params p;
    parse_params(c, t, &p, &err);
    char **dp_ids, *dp_buf;
    dp_setup(c, &p, &dp_ids, &dp_buf);
    cli_recency_setup(c, &p, 1);
    int json = cli_bool(c, "json");
    if (cli_interactive(c)) p.progress = progress_bar;
    /* where the model may go is checked before any work (pvg_model_save
     * checks it again): a store-trained model only into its data dir (or
     * its models/ sub-directory), a file-trained one never into a data dir */
    if (cli_str(c, "input")) {
        if (pvg_model_path_in_data_dir(out))
            cli_usage_error(c,
                            "--out %s is inside a data dir: a model trained from a file (--input) "
                            "keys its shoppers by a salted hash that erasure cannot reach; write "
                            "it elsewhere (it is for evaluation), or train from the store",
                            out);
    } else if (pvg_model_path_check_store(out, cli_data_dir(c), &err) != PVG_OK) {
        cli_usage_error(c, "--out: %s", err.text);
    }
    pvg_dataset *ds;
    pvg_store *store = NULL; /* open until the model is trained: its shoppers' keys */
    int rc = cli_load_dataset(c, &ds, cli_str(c, "input") ? NULL : &store, json);
    if (rc) return rc;
    say_estimate(ds, &p, "");
    pvg_model *m;
    pvg_train_stats st;
    pvg_status s = pvg_model_train(ds, &p, &m, &st, &err);
    free(dp_ids);
    free(dp_buf);
    if (s != PVG_OK) {
        pvg_store_free(store);
        pvg_dataset_free(ds);
        return cli_fail("train", s, &err);
    }
    /* the operator's check of a model trained without DP (personal data,
     * never shown to others), before any file: a present whose recent
     * buyers' window [present - days, present) holds no event (a present
     * before the data, or only future-dated events) would leave the term
     * empty. A DP run is never gated on the data (whether a release
     * happens would then depend on one shopper): its present is public,
     * and the operator is told before training where it came from. */
    pvg_model_dp_info dpi;
    int64_t release_id = 0;
    if (pvg_model_dp_info_get(m, &dpi, &err) != PVG_OK) dpi.is_dp = 0;
    pvg_model_recency rec;
    if (pvg_model_recency_get(m, &rec, &err) != PVG_OK) rec.on = 0;
    /* (a present from the data, one second after the latest event, always
     * has that event in its window) */
    if (rec.on && !dpi.is_dp && !rec.present_from_data &&
        pvg_recency_window_check(ds, rec.present, rec.recent_days, &err) != PVG_OK) {
        cli_warn("train: %s; pass another --present or --no-recency", err.text);
        pvg_store_free(store);
        pvg_model_free(m);
        pvg_dataset_free(ds);
        return CLI_EXIT_FAIL;
    }
    /* a DP model from the store: its (epsilon, delta) is charged to the
     * store's budget before the file is written (no charge, no file; a
     * refusal leaves the old file in place) */
    if (dpi.is_dp && store) {
        /* the release names the fingerprint (of the DP record and the item
         * sections): `model info` shows it, the server checks it */
        s = pvg_model_dp_charge(store, m, &release_id, &err);
        if (s != PVG_OK) {
            pvg_store_free(store);
            pvg_model_free(m);
            pvg_dataset_free(ds);
            return cli_fail("budget", s, &err);
        }
    }
    pvg_store_free(store);
    s = pvg_model_save(m, out, &err);
    if (s != PVG_OK) {
        pvg_model_free(m);
        pvg_dataset_free(ds);
        return cli_fail("save", s, &err);
    }
    char fp[65];
    for (int i = 0; i < 32; i++)
        snprintf(fp + 2 * i, 3, "%02x", pvg_model_fingerprint(m)[i]);
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(pvg_model_type_name(t)));
        json_object_set_new(o, "out", json_string(out));
        json_object_set_new(o, "source", json_string(cli_str(c, "input") ? "file" : "store"));
        json_object_set_new(o, "users", json_integer((json_int_t)pvg_model_n_users(m)));
        json_object_set_new(o, "items", json_integer((json_int_t)pvg_model_n_items(m)));
        json_object_set_new(o, "events", json_integer((json_int_t)pvg_dataset_n_events(ds)));
        json_object_set_new(o, "threads", json_integer(p.threads));
        json_object_set_new(o, "train_seconds", json_real(st.train_seconds));
        json_object_set_new(o, "epoch_seconds", epochs_json(&st));
        if (st.n_epochs) json_object_set_new(o, "final_loss", json_real(st.final_loss));
        json_object_set_new(o, "peak_rss_mb", json_real(peak_rss_mb()));
        json_object_set_new(o, "fingerprint", json_string(fp));
        if (t == PVG_MODEL_EASE) {
            json_t *rj = recency_json(&rec);
            if (rec.on)
                json_object_set_new(rj, "present_source",
                                    json_string(cli_has(c, "present") ? "--present"
                                                : dpi.is_dp           ? "wall clock"
                                                                      : "latest event"));
            json_object_set_new(o, "recency", rj);
        }
        if (dpi.is_dp) {
            json_t *d = dp_json(&dpi);
            if (release_id) json_object_set_new(d, "release_id", json_integer(release_id));
            json_object_set_new(d, "charged", json_boolean(release_id != 0));
            json_object_set_new(o, "dp", d);
        }
        print_json(o);
    } else {
        printf("trained %s on %zu users x %zu items in %.2fs -> %s\n", pvg_model_type_name(t),
               pvg_model_n_users(m), pvg_model_n_items(m), st.train_seconds, out);
        if (dpi.is_dp)
            printf("DP: epsilon %g, delta %g (%s, m = %d, %s vocabulary)%s\n", dpi.epsilon,
                   dpi.delta, dpi.mechanism, dpi.max_items, pvg_dp_vocabulary_name(dpi.vocabulary),
                   release_id ? ", charged to the store's budget (model_builds)"
                              : "; trained from a file: no ledger charged");
        if (t == PVG_MODEL_EASE) recency_print(&rec);
    }
    pvg_model_free(m);
    pvg_dataset_free(ds);
    return 0;
}

/* ---- batch recommendations: one model load, one JSON line per shopper ---- */

/* The ids of a list file (one a line; blank lines and #-comments skipped;
 * "-" is stdin; a UTF-8 byte order mark skipped; a NUL byte refused naming
 * its line and offset). *buf_out owns the strings. */
/* keep_tabs: a TAB is not trimmed from a line's ends (an "id<TAB>title"
 * line with an empty id stays visible as such) */
static int read_id_list(cli_ctx *c, const char *path, int keep_tabs, char ***ids_out, size_t *n_out,
                        char **buf_out, long **lines_out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        cli_warn("%s: cannot open: %s", path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    size_t cap = 0, len = 0;
    char *buf = NULL;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = cap ? 2 * cap : 1 << 20;
            char *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len - 1, f);
        len += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || bad) {
        free(buf);
        cli_warn("%s: cannot read", path);
        return CLI_EXIT_FAIL;
    }
    buf[len] = 0;
    /* a NUL byte would end the list silently at its line */
    const char *z = memchr(buf, 0, len);
    if (z) {
        long zl = 1;
        for (const char *q = buf; q < z; q++)
            zl += *q == '\n';
        cli_warn("%s:%ld: a NUL byte at byte offset %zu (expected text: one id a line)", path, zl,
                 (size_t)(z - buf));
        free(buf);
        return CLI_EXIT_FAIL;
    }
    /* a UTF-8 byte order mark is not part of the first id */
    size_t bom = len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
    size_t n = 0, ncap = 1024;
    char **ids = malloc(ncap * sizeof *ids);
    long *lines = lines_out ? malloc(ncap * sizeof *lines) : NULL, line_no = 0;
    if (lines_out && !lines) {
        free(ids);
        ids = NULL;
    }
    for (char *line = buf + bom, *next; ids && line && *line; line = next) {
        line_no++;
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        size_t l = strlen(line);
        while (l &&
               (line[l - 1] == '\r' || line[l - 1] == ' ' || (!keep_tabs && line[l - 1] == '\t')))
            line[--l] = 0;
        while (*line == ' ' || (!keep_tabs && *line == '\t'))
            line++;
        if (!*line || *line == '#') continue;
        if (n == ncap) {
            char **ni = realloc(ids, 2 * ncap * sizeof *ids);
            long *nl = lines ? realloc(lines, 2 * ncap * sizeof *lines) : NULL;
            if (nl) lines = nl;
            if (!ni || (lines_out && !nl)) {
                free(ni ? ni : ids);
                ids = NULL;
                break;
            }
            ids = ni;
            ncap *= 2;
        }
        if (lines) lines[n] = line_no;
        ids[n++] = line;
    }
    if (!ids) {
        free(lines);
        free(buf);
        return cli_fail("list", PVG_ERR_NOMEM, NULL);
    }
    if (lines_out) *lines_out = lines;
    *ids_out = ids;
    *n_out = n;
    *buf_out = buf;
    return 0;
}

typedef struct batch_out {
    int json, similar;
    long long lines, personalised, skipped[5];
} batch_out;

static const char *const SKIP_REASONS[] = {"unknown_user", "erased", "no_consent", "not_in_model",
                                           "unknown_item"};

static const char *skip_text(const char *r)
{
    return strcmp(r, "unknown_user") == 0   ? "no data is held about this shopper"
           : strcmp(r, "erased") == 0       ? "the shopper was erased at their request"
           : strcmp(r, "no_consent") == 0   ? "the shopper does not consent to personalisation"
           : strcmp(r, "not_in_model") == 0 ? "the shopper is not in the model (retrain it)"
                                            : "the model does not know this item";
}

static int batch_print(void *ctx, const pvg_access_batch_entry *e)
{
    batch_out *o = ctx;
    char hex[2 * PVG_PSEUDONYM_BYTES + 1];
    for (int i = 0; i < PVG_PSEUDONYM_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", e->pseudonym[i]);
    const char *who_key = o->similar ? "item" : e->ext_user ? "user" : "pseudonym";
    const char *who = e->ext_user ? e->ext_user : hex;
    o->lines++;
    if (e->skipped) {
        for (int i = 0; i < 5; i++)
            if (strcmp(e->skipped, SKIP_REASONS[i]) == 0) o->skipped[i]++;
    } else {
        o->personalised++;
    }
    if (o->json) {
        printf("{\"%s\":", who_key);
        cli_json_string(stdout, who);
        if (e->skipped) {
            printf(",\"skipped\":\"%s\",\"reason\":\"%s\"}\n", e->skipped, skip_text(e->skipped));
            return 0;
        }
        fputs(",\"items\":[", stdout);
        for (size_t i = 0; i < e->n; i++) {
            fputs(i ? ",{\"item\":" : "{\"item\":", stdout);
            cli_json_string(stdout, e->items[i].item);
            printf(",\"score\":%.6g}", e->items[i].score);
        }
        fputs("]}\n", stdout);
    } else if (e->skipped) {
        printf("# %s skipped (%s): %s\n", who, e->skipped, skip_text(e->skipped));
    } else {
        for (size_t i = 0; i < e->n; i++)
            printf("%s\t%zu\t%s\t%.6g\n", who, i + 1, e->items[i].item, e->items[i].score);
    }
    return 0;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* recommend --users FILE|--all, or --items FILE|--all-items (similar). */
static int run_recommend_batch(cli_ctx *c, const char *path, size_t k)
{
    const char *users = cli_str(c, "users"), *items = cli_str(c, "items");
    int similar = items || cli_bool(c, "all-items");
    const char *list = users ? users : items;
    double t0 = now_seconds();
    long th = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (int)int_opt(c, "threads", th > 0 ? th : 1, 1, 256);
    char **ids = NULL, *idbuf = NULL;
    size_t n_ids = 0;
    if (list) {
        int rc = read_id_list(c, list, 0, &ids, &n_ids, &idbuf, NULL);
        if (rc) return rc;
    }
    pvg_error err;
    pvg_error_clear(&err);
    pvg_model *m;
    /* mapped once (pages shared with other processes mapping the file),
     * checksum verified once, for every shopper of the run */
    pvg_status st = pvg_model_load(path, &m, &err);
    if (st != PVG_OK) {
        free(ids);
        free(idbuf);
        return cli_fail("model", st, &err);
    }
    double t_load = now_seconds() - t0;
    int store_model = pvg_model_keying(m) == PVG_KEY_STORE_PSEUDONYM;
    if (!similar && !store_model && pvg_model_path_in_data_dir(path)) {
        free(ids);
        free(idbuf);
        pvg_model_free(m);
        cli_warn("%s: a model trained from a file lies inside a data dir; it is not used "
                 "for shoppers (delete it, or move it out for evaluation)",
                 path);
        return CLI_EXIT_FAIL;
    }
    pvg_store *s = NULL;
    if (store_model) st = pvg_store_open(cli_data_dir(c), &s, &err);
    if (st == PVG_OK && s && !similar) st = pvg_model_unseal(m, s, &err);
    double t_open = now_seconds() - t0;
    static char obuf[1 << 20];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    batch_out o = {cli_bool(c, "json"), similar, 0, 0, {0}};
    pvg_access g;
    pvg_access_init(&g, s, "cli");
    if (st == PVG_OK && similar)
        st = pvg_access_similar_batch(&g, m, (const char *const *)ids, n_ids, k, threads,
                                      batch_print, &o, &err);
    else if (st == PVG_OK)
        st =
            pvg_access_recommend_batch(&g, m, (const char *const *)ids, n_ids, k,
                                       cli_bool(c, "include-seen"), threads, batch_print, &o, &err);
    fflush(stdout);
    setvbuf(stdout, NULL, _IOLBF, 0);
    pvg_store_free(s);
    pvg_model_free(m);
    free(ids);
    free(idbuf);
    if (st != PVG_OK) return cli_fail(similar ? "similar" : "recommend", st, &err);
    double t_all = now_seconds() - t0;
    fprintf(stderr,
            "%s: %lld %s, %lld answered, skipped: %lld unknown, %lld erased, %lld without "
            "consent, %lld not in the model, %lld unknown items; model mapped and verified in "
            "%.3fs, store opened in %.3fs, total %.3fs\n",
            similar ? "similar" : "recommend", o.lines, similar ? "items" : "shoppers",
            o.personalised, o.skipped[0], o.skipped[1], o.skipped[2], o.skipped[3], o.skipped[4],
            t_load, t_open - t_load, t_all);
    return 0;
}

static int run_recommend(cli_ctx *c)
{
    const char *path = cli_str_req(c, "model");
    long long k = cli_int_range(c, "k", 10, 1, 100000);
    const char *user = cli_str(c, "user"), *item = cli_str(c, "similar");
    int popular = cli_bool(c, "popular");
    int batch = (cli_str(c, "users") != NULL) + cli_bool(c, "all") + (cli_str(c, "items") != NULL) +
                cli_bool(c, "all-items");
    if ((user != NULL) + (item != NULL) + popular + batch != 1)
        cli_usage_error(c, "give exactly one of --user ID, --users FILE, --all, --similar ITEM, "
                           "--items FILE, --all-items or --popular");
    if (batch) return run_recommend_batch(c, path, (size_t)k);
    pvg_error err;
    pvg_error_clear(&err);
    pvg_model *m;
    pvg_status st = pvg_model_load(path, &m, &err);
    if (st != PVG_OK) return cli_fail("model", st, &err);
    pvg_scored_item *out = calloc((size_t)k, sizeof *out);
    if (!out) {
        pvg_model_free(m);
        return cli_fail("recommend", PVG_ERR_NOMEM, NULL);
    }
    size_t n = 0;
    pvg_access_rec_answer ans = {0};
    pvg_item **cat = NULL; /* catalog rows of the answer (store models), for titles and prices */
    int store_model = pvg_model_keying(m) == PVG_KEY_STORE_PSEUDONYM;
    if (user && !store_model && pvg_model_path_in_data_dir(path)) {
        /* a file-trained model left in a data dir (by an older version):
         * its per-shopper rows are beyond consent, audit and erasure */
        free(out);
        pvg_model_free(m);
        cli_warn("%s: a model trained from a file lies inside a data dir; it is not used "
                 "for shoppers (delete it, or move it out for evaluation)",
                 path);
        return CLI_EXIT_FAIL;
    }
    if (user || (item && store_model)) {
        /* a model trained from the store answers through the access gate:
         * consent and erasure hold, and the access is audited first; a model
         * trained from a file has no store behind it */
        pvg_store *s = NULL;
        if (store_model) {
            st = pvg_store_open(cli_data_dir(c), &s, &err);
            if (st != PVG_OK) {
                free(out);
                pvg_model_free(m);
                return cli_fail("store", st, &err);
            }
        }
        pvg_access g;
        pvg_access_init(&g, s, "cli");
        /* the sealed per-shopper section (store-trained models) */
        st = s && user ? pvg_model_unseal(m, s, &err) : PVG_OK;
        if (st == PVG_OK && user) {
            pvg_access_rec_request rq = {0};
            rq.model = m;
            rq.ext_user = user;
            rq.k = (size_t)k;
            rq.include_seen = cli_bool(c, "include-seen");
            st = pvg_access_recommend(&g, &rq, out, &ans, &err);
            n = ans.n;
        } else if (st == PVG_OK) {
            st = pvg_access_similar(&g, m, item, NULL, (size_t)k, out, &n, &err);
        }
        /* titles and prices from the catalog (not personal) for the output */
        if (st == PVG_OK && s) {
            cat = calloc(n ? n : 1, sizeof *cat);
            for (size_t i = 0; cat && i < n; i++) {
                pvg_error ierr;
                if (pvg_store_item_get(s, out[i].item, &cat[i], &ierr) != PVG_OK) cat[i] = NULL;
            }
        }
        pvg_store_free(s);
    } else if (item) {
        st = pvg_model_similar(m, item, (size_t)k, out, &n, &err);
    } else {
        st = pvg_model_popular(m, (size_t)k, out, &n, &err);
    }
    if (st != PVG_OK) {
        free(out);
        pvg_model_free(m);
        return cli_fail(user ? user : item ? item : "popular", st, &err);
    }
    if (cli_bool(c, "json")) {
        json_t *o = json_object(), *a = json_array();
        json_object_set_new(o, "model", json_string(pvg_model_type_name(pvg_model_type_of(m))));
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "item", json_string(out[i].item));
            if (cat && cat[i] && cat[i]->title)
                json_object_set_new(e, "title", json_string(cat[i]->title));
            /* price: the typical price (median of the recent ones); and the last */
            if (cat && cat[i] && cat[i]->price >= 0)
                json_object_set_new(e, "price", json_real(cat[i]->price));
            if (cat && cat[i] && cat[i]->last_price >= 0)
                json_object_set_new(e, "last_price", json_real(cat[i]->last_price));
            json_object_set_new(e, "score", json_real(out[i].score));
            json_array_append_new(a, e);
        }
        json_object_set_new(o, "items", a);
        if (user) {
            json_object_set_new(o, "personalized", json_boolean(!ans.reason));
            if (ans.reason) json_object_set_new(o, "reason", json_string(ans.reason));
        }
        print_json(o);
    } else {
        if (user && ans.reason)
            printf("# not personalised (%s): the most popular items\n",
                   strcmp(ans.reason, "no_consent") == 0     ? "the user does not consent to "
                                                               "personalisation"
                   : strcmp(ans.reason, "unknown_user") == 0 ? "no data is held about this user"
                                                             : "the user is not in the model");
        for (size_t i = 0; i < n; i++) {
            const pvg_item *it = cat ? cat[i] : NULL;
            if (it) {
                char price[32] = "-";
                if (it->price >= 0) snprintf(price, sizeof price, "%.2f", it->price);
                printf("%zu\t%s\t%s\t%s\t%.6g\n", i + 1, out[i].item, it->title ? it->title : "-",
                       price, out[i].score);
            } else {
                printf("%zu\t%s\t%.6g\n", i + 1, out[i].item, out[i].score);
            }
        }
    }
    for (size_t i = 0; cat && i < n; i++)
        pvg_item_free(cat[i]);
    free(cat);
    free(out);
    pvg_model_free(m);
    return 0;
}

/* n decimal digits at s into *v (no sign, no space); 0 on success. */
static int fixed_digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        *v = *v * 10 + (s[i] - '0');
    }
    return 0;
}

/* The UTC time of a calendar date and time that exists (2010-02-31 and
 * 23:59:60 do not: timegm would roll them over), from 1970 on. */
static int utc_time(int y, int mo, int d, int hh, int mi, int ss, int64_t *out)
{
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || hh > 23 || mi > 59 || ss > 59)
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = hh;
    tm.tm_min = mi;
    tm.tm_sec = ss;
    time_t tt = timegm(&tm);
    if (tt == (time_t)-1 || tm.tm_year != y - 1900 || tm.tm_mon != mo - 1 || tm.tm_mday != d)
        return -1;
    *out = (int64_t)tt;
    return 0;
}

/* "YYYY-MM-DD" at s (exactly: four, two and two digits); the number of
 * bytes read, or -1. */
static int read_date(const char *s, int *y, int *mo, int *d)
{
    if (fixed_digits(s, 4, y) || s[4] != '-' || fixed_digits(s + 5, 2, mo) || s[7] != '-' ||
        fixed_digits(s + 8, 2, d))
        return -1;
    return 10;
}

static int parse_date(const char *s, int64_t *out)
{
    int y, mo, d, n = read_date(s, &y, &mo, &d);
    if (n < 0 || s[n]) return -1;
    return utc_time(y, mo, d, 0, 0, 0, out);
}

/* "YYYY-MM-DD", "YYYY-MM-DD[T ]HH:MM:SS[Z]" (UTC) or Unix seconds (digits
 * only), nothing around them. */
static int parse_time(const char *s, int64_t *out)
{
    size_t nd = strspn(s, "0123456789");
    if (nd > 0 && !s[nd]) {
        /* beyond int64_t's range and year 9999; or under 9 digits (before
         * 1973), as a year alone ("2010") would be read */
        if (nd > 18 || nd < 9) return -1;
        *out = (int64_t)strtoll(s, NULL, 10);
        return 0;
    }
    int y, mo, d, hh = 0, mi = 0, ss = 0, n = read_date(s, &y, &mo, &d);
    if (n < 0) return -1;
    const char *t = s + n;
    if (*t == 'T' || *t == ' ') {
        if (fixed_digits(t + 1, 2, &hh) || t[3] != ':' || fixed_digits(t + 4, 2, &mi) ||
            t[6] != ':' || fixed_digits(t + 7, 2, &ss))
            return -1;
        t += 9;
        if (*t == 'Z') t++;
    }
    if (*t) return -1;
    return utc_time(y, mo, d, hh, mi, ss, out);
}

void cli_recency_setup(cli_ctx *c, pvg_train_params *p, int train)
{
    const char *ps = cli_str(c, "present");
    if (cli_bool(c, "no-recency")) {
        if (ps) cli_usage_error(c, "--present is for the recency terms, not with --no-recency");
        return;
    }
    if (p->type != PVG_MODEL_EASE) {
        if (ps) cli_usage_error(c, "--present: only ease has recency terms");
        return;
    }
    int64_t present = 0;
    if (ps) {
        if (parse_time(ps, &present) || present <= 0 || present > 253402300799LL)
            cli_usage_error(c,
                            "--present: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS (UTC) or Unix "
                            "seconds (9 digits or more) before the year 10000, got '%s'",
                            ps);
    } else if (train && p->dp_epsilon > 0) {
        present = (int64_t)time(NULL); /* public: not read from the data */
        char when[32];
        if (p->type == PVG_MODEL_EASE && !cli_bool(c, "json"))
            fprintf(stderr,
                    "train: recency: the present is now, %s: the recent buyers are those of the "
                    "last days before it. For an import of past data pass --present with a "
                    "public date (the end of the period it covers), never one read from the "
                    "events: the model's header records it\n",
                    cli_utc_time(present, when, sizeof when));
    }
    pvg_train_params_recency_default(p, present);
}

/* The evaluation options of eval and tune from their flags. */
static void eval_options(cli_ctx *c, pvg_eval_protocol proto, const pvg_train_params *tp,
                         pvg_eval_options *out)
{
    pvg_eval_options o;
    pvg_eval_options_default(proto, &o);
    o.seed = tp->seed;
    o.threads = tp->threads;
    o.validation = cli_bool(c, "validation");
    o.test_fraction = cli_double(c, "test-fraction", 0.25);
    if (!(o.test_fraction > 0 && o.test_fraction < 1))
        cli_usage_error(c, "--test-fraction must be in (0, 1)");
    o.heldout_users = (long)cli_int_range(c, "heldout-users", 100, 1, 1000000000);
    o.min_user_items = (long)cli_int_range(c, "min-user-items", 1, 1, 1000000);
    if (proto == PVG_EVAL_TEMPORAL) {
        const char *cs = cli_str(c, "cutoff");
        if (!cs) cli_usage_error(c, "temporal needs --cutoff YYYY-MM-DD");
        if (parse_date(cs, &o.cutoff))
            cli_usage_error(c, "--cutoff: expected YYYY-MM-DD, got '%s'", cs);
    }
    if (cli_has(c, "k")) {
        double ks[PVG_EVAL_MAX_K];
        int n = cli_double_list(c, "k", ks, PVG_EVAL_MAX_K);
        for (int i = 0; i < n; i++) {
            if (ks[i] < 1 || ks[i] > 100000 || ks[i] != floor(ks[i]))
                cli_usage_error(c, "-k: cut-offs must be integers in 1..100000");
            o.ks[i] = (int)ks[i];
        }
        o.n_ks = n;
    }
    *out = o;
}

/* What eval and tune share: the model type, the protocol, the training
 * parameters and the evaluation options, from the flags (usage errors
 * exit). */
void cli_eval_setup(cli_ctx *c, const char *verb, int need_input, pvg_model_type *t,
                    pvg_eval_protocol *proto, pvg_train_params *p, pvg_eval_options *o)
{
    const char *ms = cli_str_req(c, "model");
    const char *ps = cli_str_req(c, "protocol");
    if (need_input && !cli_has(c, "input"))
        cli_usage_error(c, "%s needs --input FILE --format F", verb);
    pvg_error err;
    pvg_error_clear(&err);
    if (pvg_model_type_parse(ms, t, &err) != PVG_OK) cli_usage_error(c, "%s", err.text);
    if (pvg_eval_protocol_parse(ps, proto, &err) != PVG_OK) cli_usage_error(c, "%s", err.text);
    parse_params(c, *t, p, &err);
    eval_options(c, *proto, p, o);
}

static int run_eval(cli_ctx *c)
{
    pvg_error err;
    pvg_error_clear(&err);
    pvg_model_type t;
    pvg_eval_protocol proto;
    pvg_train_params p;
    pvg_eval_options o;
    cli_eval_setup(c, "eval", 1, &t, &proto, &p, &o);
    char **dp_ids, *dp_buf;
    dp_setup(c, &p, &dp_ids, &dp_buf); /* files only: no ledger */
    cli_recency_setup(c, &p, 0);
    int json = cli_bool(c, "json");
    if (cli_interactive(c)) p.progress = progress_bar;
    pvg_dataset *ds;
    int rc = cli_load_dataset(c, &ds, NULL, json);
    if (rc) return rc;
    say_estimate(ds, &p, " (the whole file; its training part needs at most this)");
    pvg_eval_result r;
    pvg_status st = pvg_eval_run(ds, &p, &o, &r, &err);
    free(dp_ids);
    free(dp_buf);
    if (st != PVG_OK) {
        pvg_dataset_free(ds);
        return cli_fail("eval", st, &err);
    }
    json_t *j = json_object();
    if (p.dp_epsilon > 0) {
        json_t *d = json_object();
        json_object_set_new(d, "epsilon", json_real(p.dp_epsilon));
        json_object_set_new(d, "delta", json_real(p.dp_delta));
        /* the bound the trainer used (the model's record), not the
         * parameter's default: they differ for DP-EASE's text-only model */
        json_object_set_new(d, "max_items", json_integer(r.dp.max_items));
        json_object_set_new(d, "mechanism", json_string(r.dp.mechanism));
        if (p.dp_noise_multiplier > 0)
            json_object_set_new(d, "noise_multiplier", json_real(p.dp_noise_multiplier));
        json_object_set_new(d, "vocabulary", json_string(p.dp_items ? "list" : "selected"));
        json_object_set_new(j, "dp", d);
    }
    json_object_set_new(j, "model", json_string(pvg_model_type_name(t)));
    json_object_set_new(j, "protocol", json_string(pvg_eval_protocol_name(proto)));
    json_object_set_new(j, "split", json_string(o.validation ? "validation" : "test"));
    json_object_set_new(j, "seed", json_integer((json_int_t)o.seed));
    json_object_set_new(j, "users", json_integer((json_int_t)pvg_dataset_n_users(ds)));
    json_object_set_new(j, "items", json_integer((json_int_t)pvg_dataset_n_items(ds)));
    json_object_set_new(j, "train_interactions", json_integer((json_int_t)r.train_interactions));
    json_object_set_new(j, "test_interactions", json_integer((json_int_t)r.test_interactions));
    json_object_set_new(j, "users_evaluated", json_integer(r.users_evaluated));
    for (int q = 0; q < r.n_ks; q++) {
        char key[32];
        const pvg_eval_at_k *a = &r.at[q];
        snprintf(key, sizeof key, "recall@%d", a->k);
        json_object_set_new(j, key, json_real(a->recall));
        snprintf(key, sizeof key, "ndcg@%d", a->k);
        json_object_set_new(j, key, json_real(a->ndcg));
        snprintf(key, sizeof key, "precision@%d", a->k);
        json_object_set_new(j, key, json_real(a->precision));
        snprintf(key, sizeof key, "map@%d", a->k);
        json_object_set_new(j, key, json_real(a->map));
        snprintf(key, sizeof key, "hr@%d", a->k);
        json_object_set_new(j, key, json_real(a->hr));
        snprintf(key, sizeof key, "coverage@%d", a->k);
        json_object_set_new(j, key, json_real(a->coverage));
    }
    json_object_set_new(j, "train_seconds", json_real(r.train_seconds));
    json_object_set_new(j, "eval_seconds", json_real(r.eval_seconds));
    json_object_set_new(j, "epoch_seconds", epochs_json(&r.train));
    json_object_set_new(j, "peak_rss_mb", json_real(peak_rss_mb()));
    json_t *hp = json_object();
    if (t == PVG_MODEL_IALS && p.dp_epsilon > 0) { /* what DP training used: never data-derived */
        if (p.reg < 0) p.reg = PVG_IALS_DP_REG;
        if (p.alpha0 < 0 && p.alpha < 0) p.alpha = PVG_IALS_DP_ALPHA;
    }
    if (t == PVG_MODEL_IALS || t == PVG_MODEL_BPR) {
        json_object_set_new(hp, "factors", json_integer(p.factors));
        json_object_set_new(hp, "epochs", json_integer(p.epochs));
        if (p.reg >= 0) json_object_set_new(hp, "reg", json_real(p.reg));
    }
    if (t == PVG_MODEL_IALS) {
        if (p.alpha0 >= 0)
            json_object_set_new(hp, "alpha0", json_real(p.alpha0));
        else if (p.alpha > 0)
            json_object_set_new(hp, "alpha", json_real(p.alpha));
        if (p.reg < 0 || (p.alpha0 < 0 && p.alpha < 0))
            json_object_set_new(hp, "derived_from_degrees",
                                json_string(p.reg < 0 && p.alpha0 < 0 && p.alpha < 0 ? "reg, alpha"
                                            : p.reg < 0                              ? "reg"
                                                                                     : "alpha"));
        json_object_set_new(hp, "nu", json_real(p.nu));
        json_object_set_new(hp, "cg_steps", json_integer(p.cg_steps));
        json_object_set_new(hp, "confidence", json_real(p.confidence));
    }
    if (t == PVG_MODEL_BPR) json_object_set_new(hp, "lr", json_real(p.lr));
    if (t == PVG_MODEL_EASE) json_object_set_new(hp, "lambda", json_real(p.ease_lambda));
    if (t == PVG_MODEL_ITEMKNN) {
        json_object_set_new(hp, "neighbors", json_integer(p.neighbors));
        json_object_set_new(hp, "shrink", json_real(p.shrink));
    }
    json_object_set_new(j, "hyperparameters", hp);
    if (t == PVG_MODEL_EASE) json_object_set_new(j, "recency", recency_json(&r.recency));
    if (json) {
        print_json(j);
    } else {
        printf("%s %s: %ld users evaluated, trained in %.2fs\n", pvg_model_type_name(t),
               pvg_eval_protocol_name(proto), r.users_evaluated, r.train_seconds);
        for (int q = 0; q < r.n_ks; q++)
            printf("  k=%-4d recall %.4f  ndcg %.4f  precision %.4f  map %.4f  hr %.4f  coverage "
                   "%.4f\n",
                   r.at[q].k, r.at[q].recall, r.at[q].ndcg, r.at[q].precision, r.at[q].map,
                   r.at[q].hr, r.at[q].coverage);
        json_decref(j);
    }
    pvg_dataset_free(ds);
    return 0;
}

/* ---- tune: random search on a validation split carved from training ---- */

static double tune_uniform(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (double)((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
}

static json_t *params_json(const pvg_train_params *p, pvg_model_type t)
{
    json_t *o = json_object();
    for (size_t i = 0; i < N_HYPERS; i++) {
        const hyper_def *h = &HYPERS[i];
        if (h->model != t) continue;
        double v = hyper_get(p, h);
        /* iALS alpha0, alpha and reg below 0: derived from the data */
        if (t == PVG_MODEL_IALS && v < 0 &&
            (strcmp(h->name, "alpha0") == 0 || strcmp(h->name, "alpha") == 0 ||
             strcmp(h->name, "reg") == 0))
            continue;
        json_object_set_new(o, h->name, h->is_int ? json_integer((json_int_t)v) : json_real(v));
    }
    return o;
}

static int run_tune(cli_ctx *c)
{
    const char *out = cli_str(c, "out");
    pvg_error err;
    pvg_error_clear(&err);
    pvg_model_type t;
    pvg_eval_protocol proto;
    pvg_train_params base;
    pvg_eval_options o;
    cli_eval_setup(c, "tune", 1, &t, &proto, &base, &o);
    cli_recency_setup(c, &base, 0);
    o.validation = 1; /* the test part is never looked at */
    int K = (int)cli_int_range(c, "metric-k", 20, 1, 100000);
    o.n_ks = 1;
    o.ks[0] = K;
    long trials = (long)cli_int_range(c, "trials", 20, 1, 100000);
    double budget = cli_double(c, "seconds", 0);
    if (budget < 0) cli_usage_error(c, "--seconds must be >= 0 (0: no time budget)");
    char outbuf[256];
    if (!out) {
        snprintf(outbuf, sizeof outbuf, "tuned-%s.json", pvg_model_type_name(t));
        out = outbuf;
    }
    int json = cli_bool(c, "json"), bar = cli_interactive(c);
    pvg_dataset *ds;
    int rc = cli_load_dataset(c, &ds, NULL, json);
    if (rc) return rc;
    uint64_t rs = base.seed ^ 0x74756e65ULL;
    double t0 = now_seconds(), best = -1, first = -1;
    pvg_train_params bestp = base;
    long done = 0;
    json_t *hist = json_array();
    for (long trial = 0; trial < trials; trial++) {
        if (trial && budget > 0 && now_seconds() - t0 >= budget) break;
        pvg_train_params p = base;
        /* trial 0: the defaults (with the flags given); then random points
         * of the ranges for every hyperparameter no flag fixed */
        for (size_t i = 0; trial && i < N_HYPERS; i++) {
            const hyper_def *h = &HYPERS[i];
            if (h->model != t || !(h->hi > h->lo) || cli_has(c, h->name)) continue;
            if (t == PVG_MODEL_IALS && strcmp(h->name, "alpha") == 0 && cli_has(c, "alpha0"))
                continue;
            double u = tune_uniform(&rs);
            hyper_set(&p, h,
                      h->is_int ? h->lo + u * (h->hi - h->lo)
                                : exp(log(h->lo) + u * (log(h->hi) - log(h->lo))));
        }
        pvg_eval_result r;
        pvg_status st = pvg_eval_run(ds, &p, &o, &r, &err);
        if (st != PVG_OK) {
            json_decref(hist);
            pvg_dataset_free(ds);
            return cli_fail("tune", st, &err);
        }
        double v = r.at[0].ndcg;
        if (trial == 0) first = v;
        if (v > best) {
            best = v;
            bestp = p;
        }
        done++;
        json_t *e = json_object();
        json_object_set_new(e, "params", params_json(&p, t));
        json_object_set_new(e, "ndcg", json_real(v));
        json_object_set_new(e, "coverage", json_real(r.at[0].coverage));
        json_array_append_new(hist, e);
        if (bar) {
            int width = 30, fill = (int)((trial + 1) * width / trials);
            char b[64];
            for (int i = 0; i < width; i++)
                b[i] = i < fill ? '#' : '.';
            b[width] = 0;
            fprintf(stderr, "\r[%s] trial %ld/%ld  ndcg@%d %.4f  best %.4f  %.0fs ", b, trial + 1,
                    trials, K, v, best, now_seconds() - t0);
            fflush(stderr);
        }
    }
    if (bar) fputc('\n', stderr);
    pvg_dataset_free(ds);
    json_t *res = json_object();
    json_object_set_new(res, "model", json_string(pvg_model_type_name(t)));
    json_object_set_new(res, "protocol", json_string(pvg_eval_protocol_name(proto)));
    char key[32];
    snprintf(key, sizeof key, "ndcg@%d", K);
    json_object_set_new(res, "metric", json_string(key));
    json_object_set_new(res, "split", json_string("validation"));
    json_object_set_new(res, "seed", json_integer((json_int_t)base.seed));
    json_object_set_new(res, "trials", json_integer(done));
    json_object_set_new(res, "seconds", json_real(now_seconds() - t0));
    json_object_set_new(res, "default_value", json_real(first));
    json_object_set_new(res, "best_value", json_real(best));
    json_object_set_new(res, "params", params_json(&bestp, t));
    json_object_set_new(res, "history", hist);
    if (json_dump_file(res, out, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) != 0) {
        json_decref(res);
        cli_warn("%s: cannot write", out);
        return CLI_EXIT_FAIL;
    }
    if (json) {
        json_object_del(res, "history");
        json_object_set_new(res, "out", json_string(out));
        print_json(res);
    } else {
        char *pj =
            json_dumps(json_object_get(res, "params"), JSON_COMPACT | JSON_REAL_PRECISION(4));
        printf("%s: %ld trials, validation %s %.4f with the defaults, %.4f with %s -> %s (train "
               "--params %s)\n",
               pvg_model_type_name(t), done, key, first, best, pj ? pj : "?", out, out);
        free(pj);
        json_decref(res);
    }
    return 0;
}

static const cli_flag train_flags[] = {
    {"model", CLI_STR, "M", "popularity, itemknn, ials, ease or bpr"},
    {"out", CLI_STR, "FILE", "where to write the model file"},
    {"json", CLI_BOOL, NULL, "print a JSON summary (no progress bar)"},
    CLI_HYPER_FLAGS,
    DP_FLAGS,
    {0},
};

static const cli_flag model_info_flags[] = {
    {"model", CLI_STR, "FILE", "model file"},
    {"json", CLI_BOOL, NULL, "JSON output"},
    {0},
};

/* model info: the header of a model file, its DP record included */
static int run_model_info(cli_ctx *c)
{
    const char *path = cli_str_req(c, "model");
    pvg_error err;
    pvg_error_clear(&err);
    pvg_model *m;
    pvg_status st = pvg_model_load(path, &m, &err);
    if (st != PVG_OK) return cli_fail("model", st, &err);
    pvg_model_dp_info d;
    pvg_model_recency rec;
    if ((st = pvg_model_dp_info_get(m, &d, &err)) != PVG_OK ||
        (st = pvg_model_recency_get(m, &rec, &err)) != PVG_OK) {
        pvg_model_free(m);
        return cli_fail("model", st, &err);
    }
    char fp[65];
    for (int i = 0; i < 32; i++)
        snprintf(fp + 2 * i, 3, "%02x", pvg_model_fingerprint(m)[i]);
    const char *src = pvg_model_keying(m) == PVG_KEY_STORE_PSEUDONYM ? "store" : "file";
    if (cli_bool(c, "json")) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(pvg_model_type_name(pvg_model_type_of(m))));
        json_object_set_new(o, "path", json_string(path));
        json_object_set_new(o, "source", json_string(src));
        json_object_set_new(o, "sealed", json_boolean(pvg_model_is_sealed(m)));
        json_object_set_new(o, "users", json_integer((json_int_t)pvg_model_n_users(m)));
        json_object_set_new(o, "items", json_integer((json_int_t)pvg_model_n_items(m)));
        json_object_set_new(o, "fingerprint", json_string(fp));
        json_object_set_new(o, "dp", d.is_dp ? dp_json(&d) : json_null());
        if (pvg_model_type_of(m) == PVG_MODEL_EASE)
            json_object_set_new(o, "recency", recency_json(&rec));
        print_json(o);
    } else {
        printf("model        %s\n", pvg_model_type_name(pvg_model_type_of(m)));
        printf("trained from %s%s\n", src,
               pvg_model_is_sealed(m) ? " (per-shopper rows sealed)" : "");
        printf("users        %zu\n", pvg_model_n_users(m));
        printf("items        %zu\n", pvg_model_n_items(m));
        printf("fingerprint  %s\n", fp);
        if (d.is_dp)
            printf("dp           epsilon %g, delta %g, %s, m = %d, sensitivity %g, noise "
                   "multiplier %g, %s vocabulary\n",
                   d.epsilon, d.delta, d.mechanism, d.max_items, d.sensitivity, d.noise_multiplier,
                   pvg_dp_vocabulary_name(d.vocabulary));
        else
            printf("dp           none (trained without differential privacy)\n");
        if (pvg_model_type_of(m) == PVG_MODEL_EASE) recency_print(&rec);
    }
    pvg_model_free(m);
    return 0;
}

static const cli_flag recommend_flags[] = {
    {"model", CLI_STR, "FILE", "model file (from privguide train)"},
    {"user", CLI_STR, "ID", "external user id to recommend for"},
    {"similar", CLI_STR, "ITEM", "list items similar to ITEM instead"},
    {"popular", CLI_BOOL, NULL, "list the most popular items instead"},
    {"k", CLI_INT, "N", "how many items (default 10)"},
    {"users", CLI_STR, "FILE",
     "batch: every external user id in FILE (one a line, - for stdin), one line each"},
    {"all", CLI_BOOL, NULL, "batch: every shopper of the store (identified by pseudonym)"},
    {"items", CLI_STR, "FILE", "batch: items similar to each item id in FILE"},
    {"all-items", CLI_BOOL, NULL, "batch: items similar to every item of the model"},
    {"threads", CLI_INT, "N", "batch: scoring threads (default: the online CPUs)"},
    {"include-seen", CLI_BOOL, NULL, "do not exclude items the user already has"},
    {"json", CLI_BOOL, NULL, "JSON output (batch: one JSON object a line)"},
    {0},
};

static const cli_flag eval_flags[] = {
    {"model", CLI_STR, "M", "popularity, itemknn, ials, ease or bpr"},
    {"protocol", CLI_STR, "P", "random-split, holdout-users or temporal"},
    {"test-fraction", CLI_DOUBLE, "X", "random-split: per-user held-out fraction (default 0.25)"},
    {"heldout-users", CLI_INT, "N", "holdout-users: N validation and N test users (default 100)"},
    {"cutoff", CLI_STR, "YYYY-MM-DD", "temporal: events before this day (UTC) train"},
    {"min-user-items", CLI_INT, "N", "temporal: users need N training items (default 1)"},
    {"validation", CLI_BOOL, NULL,
     "score a validation split carved from the training part (for tuning; the test part is "
     "never used)"},
    {"k", CLI_LIST, "K,...", "cut-offs (default 10,20,50,100)"},
    {"json", CLI_BOOL, NULL, "JSON output"},
    CLI_HYPER_FLAGS,
    DP_FLAGS,
    {0},
};

static const cli_flag tune_flags[] = {
    {"model", CLI_STR, "M", "popularity, itemknn, ials, ease or bpr"},
    {"protocol", CLI_STR, "P", "random-split, holdout-users or temporal (as eval)"},
    {"trials", CLI_INT, "N", "how many points to try, the defaults first (default 20)"},
    {"seconds", CLI_DOUBLE, "S", "stop starting trials after S seconds (default 0: no limit)"},
    {"metric-k", CLI_INT, "K", "maximise validation ndcg@K (default 20)"},
    {"out", CLI_STR, "FILE", "where to write the chosen parameters (default tuned-M.json)"},
    {"test-fraction", CLI_DOUBLE, "X", "random-split: per-user held-out fraction (default 0.25)"},
    {"heldout-users", CLI_INT, "N", "holdout-users: N validation and N test users (default 100)"},
    {"cutoff", CLI_STR, "YYYY-MM-DD", "temporal: events before this day (UTC) train"},
    {"min-user-items", CLI_INT, "N", "temporal: users need N training items (default 1)"},
    {"json", CLI_BOOL, NULL, "JSON summary (no progress bar)"},
    CLI_HYPER_FLAGS,
    {0},
};

const cli_command cli_cmds_model[] = {
    {"train", NULL, 0, 0, "train a recommender from the store or a file", model_help, train_flags,
     run_train},
    {"recommend", NULL, 0, 0, "top-k items for a user (or similar / popular items) from a model",
     "For a model trained from the store, the user's pseudonym is computed with the store's "
     "pepper (--data-dir); a file-trained model hashes the id with the salt in the model file.\n"
     "Text: rank, item, title, typical price (the median of the item's last 32 prices), score;\n"
     "--json keeps the ids and gives \"price\" (typical) and \"last_price\".",
     recommend_flags, run_recommend},
    {"eval", NULL, 0, 0, "evaluate a recommender offline on a file (ranking metrics as JSON)",
     "Protocols are deterministic under --seed. recall@k = hits / min(k, |targets|); ndcg@k "
     "binary gains; map@k divides by min(k, |targets|); coverage@k = distinct recommended items / "
     "catalog.",
     eval_flags, run_eval},
    {"model info", NULL, 0, 0, "show a model file's header, its DP record included",
     "The model type, where it was trained from, its shapes, fingerprint and, for a model "
     "trained with --epsilon, its (epsilon, delta), mechanism, contribution bound and "
     "vocabulary.",
     model_info_flags, run_model_info},
    {"tune", NULL, 0, 0, "search hyperparameters on a validation split (random search)",
     "Random search (log-uniform ranges) maximising ndcg@K on a validation split carved from the "
     "training part of --protocol (the test part is never looked at); the first trial is the "
     "defaults. Writes {\"model\", \"params\", ...} to --out, which train and eval read with "
     "--params FILE. Hyperparameter flags given are kept fixed.",
     tune_flags, run_tune},
    {"audit fairness", NULL, 0, 0,
     "compare recommendation quality and exposure across groups of shoppers", cli_fairness_help,
     cli_fairness_flags, cli_run_audit_fairness},
    {0},
};
