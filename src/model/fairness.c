/*
 * fairness.c - the fairness audit (privguide/fairness.h): group labels and
 * their readers, the per-shopper evaluation with the calibrated re-ranking,
 * the per-group aggregation with bootstrap or normal intervals, the DP
 * release of the group statistics, and the saved report.
 */
#include "model/fairness_internal.h"
#include "model/model_internal.h"

#include <privguide/dp.h>
#include <privguide/ledger.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

pvg_status pvg_model_train_matrix(const pvg_dataset *ds, const pvg_csr *R,
                                  const pvg_train_params *p, pvg_model **out,
                                  pvg_train_stats *stats, pvg_error *err);

struct pvg_fair_report {
    json_t *j; /* the report as built (aggregates only) */
};

/* ==== labels ============================================================ */

struct pvg_fair_labels {
    size_t n, cap; /* entries */
    unsigned char **keys;
    size_t *key_len;
    uint32_t *label; /* index into names */
    uint32_t *tab;   /* open addressing: entry + 1 */
    size_t tab_cap;
    char **names;
    size_t n_names, cap_names;
    size_t conflicts;
};

static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

pvg_status pvg_fair_labels_new(pvg_fair_labels **out, pvg_error *err)
{
    *out = calloc(1, sizeof **out);
    return *out ? PVG_OK : pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
}

void pvg_fair_labels_free(pvg_fair_labels *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i]);
    for (size_t i = 0; i < l->n_names; i++)
        free(l->names[i]);
    free(l->keys);
    free(l->key_len);
    free(l->label);
    free(l->tab);
    free(l->names);
    free(l);
}

static long labels_find(const pvg_fair_labels *l, const void *key, size_t len)
{
    if (!l->tab_cap) return -1;
    size_t s = fnv(key, len) & (l->tab_cap - 1);
    while (l->tab[s]) {
        size_t e = l->tab[s] - 1;
        if (l->key_len[e] == len && memcmp(l->keys[e], key, len) == 0) return (long)e;
        s = (s + 1) & (l->tab_cap - 1);
    }
    return -1;
}

const char *pvg_fair_labels_get(const pvg_fair_labels *l, const void *key, size_t key_len)
{
    long e = labels_find(l, key, key_len);
    return e < 0 ? NULL : l->names[l->label[e]];
}

size_t pvg_fair_labels_count(const pvg_fair_labels *l)
{
    return l->n;
}

size_t pvg_fair_labels_conflicts(const pvg_fair_labels *l)
{
    return l->conflicts;
}

static int label_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 1 || n > 128) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

pvg_status pvg_fair_labels_set(pvg_fair_labels *l, const void *key, size_t key_len,
                               const char *label, pvg_error *err)
{
    if (!label_ok(label))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fairness: a label must be 1..128 bytes without control characters");
    long e = labels_find(l, key, key_len);
    if (e >= 0) {
        if (strcmp(l->names[l->label[e]], label) != 0) l->conflicts++;
        return PVG_OK;
    }
    uint32_t li = 0;
    while (li < l->n_names && strcmp(l->names[li], label) != 0)
        li++;
    if (li == l->n_names) {
        if (l->n_names == l->cap_names) {
            size_t nc = l->cap_names ? 2 * l->cap_names : 16;
            char **nn = realloc(l->names, nc * sizeof *nn);
            if (!nn) return pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
            l->names = nn;
            l->cap_names = nc;
        }
        if (!(l->names[l->n_names] = strdup(label)))
            return pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        l->n_names++;
    }
    if ((l->n + 1) * 2 > l->tab_cap) {
        size_t nc = l->tab_cap ? 2 * l->tab_cap : 1024;
        uint32_t *t = calloc(nc, sizeof *t);
        if (!t) return pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        for (size_t i = 0; i < l->n; i++) {
            size_t s = fnv(l->keys[i], l->key_len[i]) & (nc - 1);
            while (t[s])
                s = (s + 1) & (nc - 1);
            t[s] = (uint32_t)(i + 1);
        }
        free(l->tab);
        l->tab = t;
        l->tab_cap = nc;
    }
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 256;
        unsigned char **nk = realloc(l->keys, nc * sizeof *nk);
        if (nk) l->keys = nk;
        size_t *nl = realloc(l->key_len, nc * sizeof *nl);
        if (nl) l->key_len = nl;
        uint32_t *nb = realloc(l->label, nc * sizeof *nb);
        if (nb) l->label = nb;
        if (!nk || !nl || !nb) return pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        l->cap = nc;
    }
    unsigned char *k = malloc(key_len ? key_len : 1);
    if (!k) return pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
    memcpy(k, key, key_len);
    l->keys[l->n] = k;
    l->key_len[l->n] = key_len;
    l->label[l->n] = li;
    size_t s = fnv(key, key_len) & (l->tab_cap - 1);
    while (l->tab[s])
        s = (s + 1) & (l->tab_cap - 1);
    l->tab[s] = (uint32_t)(l->n + 1);
    l->n++;
    return PVG_OK;
}

/* ==== readers ============================================================ */

#define LINE_MAX_BYTES 8192
#define MAX_FIELDS 64

/* Splits line (modified in place) at sep; trims spaces and a trailing CR;
 * returns the field count (at most MAX_FIELDS). */
static int split_fields(char *line, char sep, char **f)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    int nf = 0;
    char *p = line;
    for (;;) {
        char *q = strchr(p, sep);
        if (q) *q = 0;
        while (*p == ' ')
            p++;
        size_t m = strlen(p);
        while (m && p[m - 1] == ' ')
            p[--m] = 0;
        if (m >= 2 && p[0] == '"' && p[m - 1] == '"') {
            p[m - 1] = 0;
            p++;
        }
        if (nf < MAX_FIELDS) f[nf++] = p;
        if (!q) break;
        p = q + 1;
    }
    return nf;
}

static char sep_of(const char *line)
{
    if (strchr(line, '|')) return '|';
    if (strchr(line, '\t')) return '\t';
    if (strchr(line, ';') && !strchr(line, ',')) return ';';
    return ',';
}

static const char *age_band(long age)
{
    return age < 25 ? "<25" : age < 35 ? "25-34" : age < 45 ? "35-44" : "45+";
}

/* The key ds uses for an external user id (normalised first). */
static pvg_status user_key_of(const pvg_dataset *ds, pvg_store *store, const char *ext,
                              unsigned char key[16], pvg_error *err)
{
    char id[PVG_ID_MAX + 1];
    pvg_status st = pvg_user_id_normalize(ext, id, sizeof id, NULL, err);
    if (st != PVG_OK) return st;
    if (ds->keying == PVG_KEY_STORE_PSEUDONYM) {
        if (!store)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "fairness: a store-keyed dataset needs its store to key the "
                                 "attribute file's shoppers");
        pvg_store_pseudonym(store, id, key);
        return PVG_OK;
    }
    return pvg_dataset_user_key(ds, id, key, err);
}

pvg_status pvg_fair_groups_read(const char *path, const char *column, const pvg_dataset *ds,
                                pvg_store *store_or_null, pvg_fair_labels *out, long *rows,
                                pvg_error *err)
{
    if (rows) *rows = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open: %s",
                                strerror(errno ? errno : ENOENT));
    char *line = malloc(LINE_MAX_BYTES);
    if (!line) {
        gzclose(gz);
        return pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
    }
    pvg_status st = PVG_OK;
    long lineno = 0, data = 0;
    int col = -1, band = 0, layout = 0; /* 1 u.user, 2 two columns, 3 header */
    char sep = ',';
    char *f[MAX_FIELDS];
    while (gzgets(gz, line, LINE_MAX_BYTES)) {
        lineno++;
        if (!strchr(line, '\n') && !gzeof(gz)) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, path, lineno, 0, -1,
                                  "line longer than %d bytes", LINE_MAX_BYTES - 2);
            break;
        }
        if (lineno == 1) {
            sep = sep_of(line);
            char tmp[LINE_MAX_BYTES];
            snprintf(tmp, sizeof tmp, "%s", line);
            int nf = split_fields(tmp, sep, f);
            const char *want = column;
            if (sep == '|' && nf == 5) {
                layout = 1;
                static const char *const names[] = {"user", "age", "gender", "occupation", "zip"};
                if (!want)
                    st = pvg_error_set_at(err, PVG_ERR_INVALID, path, 1, 0, -1,
                                          "an ML-100K u.user file: name the attribute (gender, "
                                          "age-band, age, occupation or zip)");
                else if (strcmp(want, "age-band") == 0)
                    col = 1, band = 1;
                for (int i = 1; i < 5 && col < 0 && want; i++)
                    if (strcmp(names[i], want) == 0) col = i;
                if (st == PVG_OK && col < 0)
                    st = pvg_error_set_at(err, PVG_ERR_INVALID, path, 1, 0, -1,
                                          "u.user has no attribute '%s' (expected gender, "
                                          "age-band, age, occupation or zip)",
                                          want);
            } else if (!want) {
                layout = 2;
                col = 1;
                if (nf < 2)
                    st = pvg_error_set_at(err, PVG_ERR_INVALID, path, 1, 0, -1,
                                          "expected two columns user,group");
                static const char *const hdr[] = {"user",       "user_id",     "userid", "customer",
                                                  "customerid", "customer_id", "id"};
                int is_hdr = 0;
                for (size_t i = 0; i < sizeof hdr / sizeof hdr[0]; i++)
                    is_hdr |= strcasecmp(f[0], hdr[i]) == 0;
                if (st == PVG_OK && is_hdr) continue;
            } else {
                layout = 3;
                const char *c = strcmp(want, "age-band") == 0 ? "age" : want;
                band = c != want;
                for (int i = 1; i < nf && col < 0; i++)
                    if (strcasecmp(f[i], c) == 0) col = i;
                if (col < 0)
                    st = pvg_error_set_at(err, PVG_ERR_INVALID, path, 1, 0, -1,
                                          "the header names no column '%s' (the first column is "
                                          "the user id)",
                                          c);
                if (st == PVG_OK) continue; /* header */
            }
            if (st != PVG_OK) break;
        }
        int nf = split_fields(line, sep, f);
        if (nf == 1 && !f[0][0]) continue; /* empty line */
        if (col >= nf) {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, path, lineno, 0, -1,
                                  "%d fields, expected at least %d", nf, col + 1);
            break;
        }
        const char *label = f[col];
        char bandbuf[16];
        if (band) {
            char *end;
            long age = strtol(f[col], &end, 10);
            if (end == f[col] || *end || age < 0 || age > 200) {
                st = pvg_error_set_at(err, PVG_ERR_INVALID, path, lineno, col + 1, -1,
                                      "age: expected a whole number of years");
                break;
            }
            snprintf(bandbuf, sizeof bandbuf, "%s", age_band(age));
            label = bandbuf;
        }
        if (!*label) continue; /* no value: the shopper stays unlabelled */
        unsigned char key[16];
        st = user_key_of(ds, store_or_null, f[0], key, err);
        if (st == PVG_OK) st = pvg_fair_labels_set(out, key, 16, label, err);
        if (st != PVG_OK) {
            char why[PVG_ERROR_TEXT_LEN];
            snprintf(why, sizeof why, "%s", err ? err->text : "");
            st = pvg_error_set_at(err, st, path, lineno, 1, -1, "%s", why);
            break;
        }
        data++;
    }
    (void)layout;
    if (st == PVG_OK && !gzeof(gz)) {
        int ze;
        const char *m = gzerror(gz, &ze);
        if (ze != Z_OK && ze != Z_STREAM_END)
            st = pvg_error_set_at(err, PVG_ERR_IO, path, lineno, 0, -1, "read: %s", m);
    }
    free(line);
    gzclose(gz);
    if (rows) *rows = data;
    return st;
}

pvg_status pvg_fair_groups_from_events(const char *path, pvg_format fmt, const char *field,
                                       const pvg_dataset *ds, pvg_fair_labels *out, pvg_error *err)
{
    if (!field || strcmp(field, "country") != 0)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fairness: the events file gives the attribute 'country' only, not "
                             "'%s' (give other attributes with an attribute file)",
                             field ? field : "");
    if (ds->keying != PVG_KEY_SALTED_HASH)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fairness: labels from an events file need the dataset read from "
                             "that file");
    pvg_reader *r;
    pvg_status st = pvg_reader_open(path, fmt, NULL, &r, err);
    if (st != PVG_OK) return st;
    pvg_record rec;
    int got;
    long labelled = 0;
    while ((got = pvg_reader_next(r, &rec, err)) == 1) {
        if (rec.kind != PVG_RECORD_EVENT || !rec.user) continue;
        if (!(rec.event.fields & PVG_FIELD_COUNTRY) || !rec.event.country || !*rec.event.country)
            continue;
        unsigned char key[16];
        st = pvg_dataset_user_key(ds, rec.user, key, err);
        if (st != PVG_OK) break;
        if (pvg_fair_labels_get(out, key, 16)) continue;
        st = pvg_fair_labels_set(out, key, 16, rec.event.country, err);
        if (st != PVG_OK) break;
        labelled++;
    }
    if (got < 0) st = (pvg_status)got;
    pvg_reader_free(r);
    if (st == PVG_OK && !labelled)
        st = pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1, "no event carries a country");
    return st;
}

static const char *const ML_GENRES[19] = {
    "unknown",     "Action", "Adventure", "Animation", "Children's", "Comedy",  "Crime",
    "Documentary", "Drama",  "Fantasy",   "Film-Noir", "Horror",     "Musical", "Mystery",
    "Romance",     "Sci-Fi", "Thriller",  "War",       "Western"};

pvg_status pvg_fair_categories_read(const char *path, pvg_fair_labels *out, pvg_error *err)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open: %s",
                                strerror(errno ? errno : ENOENT));
    char *line = malloc(LINE_MAX_BYTES);
    if (!line) {
        gzclose(gz);
        return pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
    }
    pvg_status st = PVG_OK;
    long lineno = 0;
    char sep = ',';
    char *f[MAX_FIELDS];
    while (st == PVG_OK && gzgets(gz, line, LINE_MAX_BYTES)) {
        lineno++;
        if (lineno == 1) sep = sep_of(line);
        int nf = split_fields(line, sep, f);
        if (nf == 1 && !f[0][0]) continue;
        const char *label = NULL;
        if (sep == '|' && nf == 24) { /* u.item: id|title|date|video|url|19 flags */
            for (int g = 0; g < 19 && !label; g++)
                if (strcmp(f[5 + g], "1") == 0) label = ML_GENRES[g];
            if (!label) label = ML_GENRES[0];
        } else if (nf >= 2) {
            if (lineno == 1 && (strcasecmp(f[0], "item") == 0 || strcasecmp(f[0], "item_id") == 0 ||
                                strcasecmp(f[0], "itemid") == 0))
                continue;
            label = f[1];
        } else {
            st = pvg_error_set_at(err, PVG_ERR_INVALID, path, lineno, 0, -1,
                                  "expected two columns item,category (or an ML-100K u.item)");
            break;
        }
        if (!*label || !*f[0]) continue;
        st = pvg_fair_labels_set(out, f[0], strlen(f[0]), label, err);
        if (st != PVG_OK) {
            char why[PVG_ERROR_TEXT_LEN];
            snprintf(why, sizeof why, "%s", err ? err->text : "");
            st = pvg_error_set_at(err, st, path, lineno, 2, -1, "%s", why);
        }
    }
    free(line);
    gzclose(gz);
    if (st == PVG_OK && !out->n)
        st = pvg_error_set_at(err, PVG_ERR_INVALID, path, 0, 0, -1, "no item category read");
    return st;
}

/* ==== calibration (Steck 2018) ============================================ */

#define CAL_ALPHA 0.01

double pvg_fair_kl(const double *p, const double *counts, int n_cats)
{
    double tot = 0, kl = 0;
    for (int c = 0; c < n_cats; c++)
        tot += counts[c];
    for (int c = 0; c < n_cats; c++) {
        if (p[c] <= 0) continue;
        double q = tot > 0 ? counts[c] / tot : 0;
        double qt = (1 - CAL_ALPHA) * q + CAL_ALPHA * p[c];
        kl += p[c] * log(p[c] / qt);
    }
    return kl;
}

size_t pvg_fair_calibrate(const int64_t *cand, const float *sc, size_t n, const int *cat_of,
                          const double *p, int n_cats, double lambda, size_t k, int64_t *out,
                          double *qcount, unsigned char *used)
{
    if (k > n) k = n;
    float lo = INFINITY, hi = -INFINITY;
    for (size_t j = 0; j < n; j++) {
        if (sc[j] < lo) lo = sc[j];
        if (sc[j] > hi) hi = sc[j];
    }
    double span = hi > lo ? (double)hi - (double)lo : 1;
    memset(used, 0, n);
    for (int c = 0; c < n_cats; c++)
        qcount[c] = 0;
    for (size_t step = 0; step < k; step++) {
        double best = -INFINITY;
        size_t bj = n;
        for (size_t j = 0; j < n; j++) {
            if (used[j]) continue;
            int c = cat_of[cand[j]];
            qcount[c] += 1;
            double kl = pvg_fair_kl(p, qcount, n_cats);
            qcount[c] -= 1;
            double s = hi > lo ? ((double)sc[j] - (double)lo) / span : 1;
            double v = (1 - lambda) * s - lambda * kl;
            if (v > best) { /* ties: the better-ranked candidate */
                best = v;
                bj = j;
            }
        }
        used[bj] = 1;
        qcount[cat_of[cand[bj]]] += 1;
        out[step] = cand[bj];
    }
    return k;
}

/* ==== the per-shopper evaluation ========================================== */

void pvg_fair_eval_free(pvg_fair_eval *e)
{
    if (!e) return;
    for (int g = 0; e->group_names && g < e->n_groups; g++)
        free(e->group_names[g]);
    for (int c = 0; e->cat_names && c < e->n_cats; c++)
        free(e->cat_names[c]);
    free(e->group_names);
    free(e->cat_names);
    free(e->u);
    free(e->lists);
    free(e->cat_count);
    free(e->hist_share);
    memset(e, 0, sizeof *e);
}

void pvg_fair_options_default(pvg_fair_options *o)
{
    memset(o, 0, sizeof *o);
    o->k = 20;
    o->bootstrap = 1000;
    o->seed = 42;
    o->min_group_users = 20;
    o->lambda = 0.5;
    o->candidates = 100;
}

static int64_t find_col(const pvg_csr *F, uint32_t u, uint32_t i)
{
    uint64_t lo = F->indptr[u], hi = F->indptr[u + 1];
    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        if (F->indices[mid] < i)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < F->indptr[u + 1] && F->indices[lo] == i) ? (int64_t)lo : -1;
}

typedef struct fair_ctx {
    const pvg_model *m;
    const pvg_csr *H, *T; /* history (training or fold-in) and targets */
    int holdout;
    const uint32_t *users; /* dataset user of each evaluated row */
    pvg_fair_eval *e;
    const int *cat_of;
    const float *pct; /* popularity percentile per item */
    size_t n_cand;
    double lambda;
    float **scores, **scratch, **sc;
    int64_t **idx, **cal;
    uint32_t **tbuf;
    double **qc;
    unsigned char **used;
} fair_ctx;

static void list_stats(fair_ctx *c, size_t a, int phase, const int64_t *list, size_t got,
                       const uint32_t *tg, size_t nt, const double *p)
{
    pvg_fair_eval *e = c->e;
    size_t k = (size_t)e->k;
    double r, nd, pr, ap, hr;
    pvg_eval_user_metrics(list, got, tg, nt, e->k, &r, &nd, &pr, &ap, &hr);
    pvg_fair_user *fu = &e->u[a];
    fu->recall[phase] = (float)r;
    fu->ndcg[phase] = (float)nd;
    int64_t *dst = e->lists + (a * (size_t)e->phases + (size_t)phase) * k;
    uint16_t *cc = e->cat_count + (a * (size_t)e->phases + (size_t)phase) * (size_t)e->n_cats;
    double pop = 0;
    double qc[256];
    int nc = e->n_cats;
    for (int q = 0; q < nc; q++)
        qc[q] = 0;
    for (size_t j = 0; j < k; j++) {
        dst[j] = j < got ? list[j] : -1;
        if (j >= got) continue;
        pop += c->pct[list[j]];
        cc[c->cat_of[list[j]]]++;
        qc[c->cat_of[list[j]]] += 1;
    }
    fu->pop_rec[phase] = got ? (float)(pop / (double)got) : 0;
    fu->miscal[phase] = (float)pvg_fair_kl(p, qc, nc);
}

static void fair_range(void *vctx, int tid, size_t b, size_t end)
{
    fair_ctx *c = vctx;
    const pvg_model *m = c->m;
    pvg_fair_eval *e = c->e;
    size_t ni = m->n_items;
    int nc = e->n_cats;
    for (size_t a = b; a < end; a++) {
        uint32_t u = c->users[a];
        const pvg_csr *H = c->H;
        const uint32_t *hist = H->indices + H->indptr[u];
        const float *hw = H->data + H->indptr[u];
        size_t nh = (size_t)(H->indptr[u + 1] - H->indptr[u]);
        size_t nt = 0;
        for (uint64_t j = c->T->indptr[u]; j < c->T->indptr[u + 1]; j++) {
            uint32_t it = c->T->indices[j];
            if (find_col(H, u, it) < 0) c->tbuf[tid][nt++] = it;
        }
        float *scores = c->scores[tid];
        if (m->type == PVG_MODEL_POPULARITY)
            memcpy(scores, m->popularity, ni * sizeof *scores);
        else {
            const float *uf = (m->U && !c->holdout) ? m->U + (size_t)u * m->factors : NULL;
            pvg_model_score(m, uf, hist, hw, nh, scores, c->scratch[tid]);
        }
        /* history: its popularity and category distribution */
        const double *p;
        float *hs = e->hist_share + a * (size_t)nc;
        double pd[256];
        double ph = 0;
        for (int q = 0; q < nc; q++)
            pd[q] = 0;
        for (size_t j = 0; j < nh; j++) {
            scores[hist[j]] = -INFINITY;
            ph += c->pct[hist[j]];
            pd[c->cat_of[hist[j]]] += 1;
        }
        for (int q = 0; q < nc; q++) {
            pd[q] = nh ? pd[q] / (double)nh : 0;
            hs[q] = (float)pd[q];
        }
        p = pd;
        e->u[a].pop_hist = nh ? (float)(ph / (double)nh) : 0;
        size_t got = pvg_topk(scores, ni, c->n_cand, c->idx[tid], c->sc[tid]);
        size_t k = (size_t)e->k;
        list_stats(c, a, 0, c->idx[tid], got < k ? got : k, c->tbuf[tid], nt, p);
        if (e->phases > 1) {
            size_t n2 = pvg_fair_calibrate(c->idx[tid], c->sc[tid], got, c->cat_of, p, nc,
                                           c->lambda, k, c->cal[tid], c->qc[tid], c->used[tid]);
            list_stats(c, a, 1, c->cal[tid], n2, c->tbuf[tid], nt, p);
        }
    }
}

/* Assigns the groups: labelled evaluated shoppers; groups below the
 * minimum size, and beyond max_groups, merge into "other". */
static pvg_status assign_groups(const pvg_dataset *ds, const uint32_t *cand, size_t nc,
                                const pvg_fair_labels *L, const pvg_fair_options *fo,
                                pvg_fair_eval *e, uint32_t **users_out, long *unlabelled,
                                pvg_error *err)
{
    size_t nl = L->n_names;
    long *cnt = calloc(nl + 1, sizeof *cnt);
    int32_t *lab = malloc((nc ? nc : 1) * sizeof *lab);
    uint32_t *users = malloc((nc ? nc : 1) * sizeof *users);
    int *map = malloc((nl + 1) * sizeof *map);
    size_t *order = malloc((nl + 1) * sizeof *order);
    pvg_status st = PVG_OK;
    if (!cnt || !lab || !users || !map || !order) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        goto done;
    }
    *unlabelled = 0;
    for (size_t a = 0; a < nc; a++) {
        long ent = labels_find(L, ds->user_keys + 16 * (size_t)cand[a], 16);
        lab[a] = ent < 0 ? -1 : (int32_t)L->label[ent];
        if (ent < 0)
            (*unlabelled)++;
        else
            cnt[lab[a]]++;
    }
    /* keep: large enough, the largest max_groups; ties by name. A DP
     * release from the store decides nothing by the exact sizes: every
     * label of the operator's attribute file is a group (its declared
     * domain), in name order, none merged. */
    const int fixed = fo->epsilon > 0 && fo->ledger;
    size_t no = 0;
    for (size_t l = 0; l < nl; l++)
        if (cnt[l] > 0 || fixed) order[no++] = l;
    for (size_t i = 1; i < no; i++) { /* insertion sort: users desc, name asc */
        size_t x = order[i], j = i;
        while (j > 0 && ((!fixed && cnt[order[j - 1]] < cnt[x]) ||
                         ((fixed || cnt[order[j - 1]] == cnt[x]) &&
                          strcmp(L->names[order[j - 1]], L->names[x]) > 0))) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = x;
    }
    int ng = 0, other = -1;
    long n_other = 0;
    for (size_t l = 0; l < nl; l++)
        map[l] = -1;
    for (size_t i = 0; i < no; i++) {
        size_t l = order[i];
        int keep = fixed ||
                   (cnt[l] >= fo->min_group_users && (fo->max_groups <= 0 || ng < fo->max_groups) &&
                    strcmp(L->names[l], "other") != 0);
        if (keep)
            map[l] = ng++;
        else
            n_other += cnt[l];
    }
    if (n_other > 0) other = ng++;
    e->group_names = calloc((size_t)(ng ? ng : 1), sizeof *e->group_names);
    if (!e->group_names) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        goto done;
    }
    e->n_groups = ng;
    for (size_t l = 0; l < nl; l++)
        if (map[l] >= 0 && !(e->group_names[map[l]] = strdup(L->names[l]))) st = PVG_ERR_NOMEM;
    if (other >= 0 && !(e->group_names[other] = strdup("other"))) st = PVG_ERR_NOMEM;
    if (st != PVG_OK) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        goto done;
    }
    size_t n = 0;
    for (size_t a = 0; a < nc; a++)
        if (lab[a] >= 0) users[n++] = cand[a];
    e->n = n;
    e->u = calloc(n ? n : 1, sizeof *e->u);
    if (!e->u) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        goto done;
    }
    n = 0;
    for (size_t a = 0; a < nc; a++)
        if (lab[a] >= 0) e->u[n++].group = map[lab[a]] >= 0 ? map[lab[a]] : other;
    *users_out = users;
    users = NULL;
done:
    free(cnt);
    free(lab);
    free(users);
    free(map);
    free(order);
    return st;
}

/* Item categories: from the file (items it does not name: "(none)"), or
 * the popularity tiers of the training matrix. cnt: distinct training
 * users per item. */
static pvg_status item_categories(const pvg_dataset *ds, const pvg_fair_labels *cats,
                                  const float *cnt, pvg_fair_eval *e, int *cat_of, pvg_error *err)
{
    size_t ni = ds->n_items;
    if (!cats) {
        static const char *const tiers[3] = {"head", "mid", "tail"};
        e->n_cats = 3;
        e->cat_names = calloc(3, sizeof *e->cat_names);
        uint32_t *ord = malloc((ni ? ni : 1) * sizeof *ord);
        if (!e->cat_names || !ord) {
            free(ord);
            return pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        }
        for (int t = 0; t < 3; t++)
            if (!(e->cat_names[t] = strdup(tiers[t]))) {
                free(ord);
                return pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
            }
        double tot = 0;
        for (size_t i = 0; i < ni; i++) {
            ord[i] = (uint32_t)i;
            tot += cnt[i];
        }
        /* sort by count desc, index asc (shell sort: no qsort context) */
        for (size_t gap = ni / 2; gap > 0; gap /= 2)
            for (size_t i = gap; i < ni; i++) {
                uint32_t x = ord[i];
                size_t j = i;
                while (j >= gap && (cnt[ord[j - gap]] < cnt[x] ||
                                    (cnt[ord[j - gap]] == cnt[x] && ord[j - gap] > x))) {
                    ord[j] = ord[j - gap];
                    j -= gap;
                }
                ord[j] = x;
            }
        double cum = 0;
        for (size_t r = 0; r < ni; r++) {
            uint32_t i = ord[r];
            /* head while the interactions before this item are < 20%; tail once
             * those before it reach 80% */
            cat_of[i] = cum < 0.2 * tot ? 0 : cum < 0.8 * tot ? 1 : 2;
            cum += cnt[i];
        }
        free(ord);
        return PVG_OK;
    }
    if (cats->n_names > 250)
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "fairness: %zu item categories (at most 250)", cats->n_names);
    e->n_cats = (int)cats->n_names + 1;
    e->cat_names = calloc((size_t)e->n_cats, sizeof *e->cat_names);
    if (!e->cat_names) return pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
    for (size_t c = 0; c < cats->n_names; c++)
        if (!(e->cat_names[c] = strdup(cats->names[c])))
            return pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
    if (!(e->cat_names[cats->n_names] = strdup("(none)")))
        return pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
    for (size_t i = 0; i < ni; i++) {
        long ent = labels_find(cats, ds->item_ids[i], strlen(ds->item_ids[i]));
        cat_of[i] = ent < 0 ? (int)cats->n_names : (int)cats->label[ent];
    }
    return PVG_OK;
}

pvg_status pvg_fair_audit(const pvg_dataset *ds, const pvg_train_params *tp,
                          const pvg_eval_options *eo, const pvg_fair_labels *groups,
                          const pvg_fair_labels *categories_or_null, const pvg_fair_options *fo,
                          pvg_fair_report **out, pvg_error *err)
{
    *out = NULL;
    if (fo->k < 1 || fo->k > 1000)
        return pvg_error_set(err, PVG_ERR_INVALID, "fairness: k must be in 1..1000, got %d", fo->k);
    if (fo->mitigate == PVG_FAIR_MITIGATE_CALIBRATION &&
        (!(fo->lambda >= 0 && fo->lambda <= 1) || fo->candidates < fo->k || fo->candidates > 10000))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fairness: calibration needs lambda in [0, 1] and k <= candidates "
                             "<= 10000 (lambda %g, candidates %d, k %d)",
                             fo->lambda, fo->candidates, fo->k);
    if (fo->bootstrap < 0 || fo->bootstrap > 100000 || fo->min_group_users < 1 ||
        !(fo->epsilon >= 0) || !isfinite(fo->epsilon))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fairness: bootstrap in 0..100000, min_group_users >= 1 and a finite "
                             "epsilon >= 0 are needed");
    /* A release charged to a store's ledger leaves the operator: the model
     * it evaluates is trained on the same shoppers, so it must itself be
     * DP-trained (its (epsilon, delta) is charged too), or the sums' noise
     * would cover only the evaluation half of each shopper's data. */
    if (fo->epsilon > 0 && fo->ledger && !categories_or_null)
        return pvg_error_set(err, PVG_ERR_POLICY,
                             "fairness: a DP release from the store needs the item categories "
                             "(--item-categories FILE): the default popularity tiers come from "
                             "exact training counts");
    if (fo->epsilon > 0 && fo->ledger && !(tp->dp_epsilon > 0))
        return pvg_error_set(err, PVG_ERR_POLICY,
                             "fairness: a DP release from the store needs a DP-trained model "
                             "(train parameters dp_epsilon > 0; CLI --model-epsilon): the model "
                             "is trained on the same shoppers whose metrics are released");
    size_t n = ds->n_ev, ni = ds->n_items, nu = ds->n_users;
    uint8_t *role = malloc(n ? n : 1), *keep = malloc(n ? n : 1);
    pvg_csr Rt = {0}, T = {0}, Fi = {0};
    pvg_fair_eval e;
    memset(&e, 0, sizeof e);
    pvg_model *m = NULL;
    uint32_t *cand = NULL, *users = NULL;
    int *cat_of = NULL;
    float *cnt = NULL, *pct = NULL;
    fair_ctx c;
    memset(&c, 0, sizeof c);
    int threads = eo->threads < 1 ? 1 : eo->threads > 64 ? 64 : eo->threads;
    pvg_status st = PVG_OK;
    long unlabelled = 0;
    if (!role || !keep) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        goto done;
    }
    st = pvg_eval_split(ds, eo, role, err);
    if (st != PVG_OK) goto done;
    int bad = 0;
    for (size_t x = 0; x < n; x++)
        keep[x] = role[x] == PVG_SPLIT_TRAIN;
    bad |= pvg_csr_build(nu, ni, n, ds->ev_user, ds->ev_item, ds->ev_w, keep, &Rt) != PVG_OK;
    for (size_t x = 0; x < n; x++)
        keep[x] = role[x] == PVG_SPLIT_TEST;
    bad |= pvg_csr_build(nu, ni, n, ds->ev_user, ds->ev_item, ds->ev_w, keep, &T) != PVG_OK;
    for (size_t x = 0; x < n; x++)
        keep[x] = role[x] == PVG_SPLIT_FOLDIN;
    bad |= pvg_csr_build(nu, ni, n, ds->ev_user, ds->ev_item, ds->ev_w, keep, &Fi) != PVG_OK;
    if (bad) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        goto done;
    }
    int holdout = eo->protocol == PVG_EVAL_HOLDOUT_USERS;
    const pvg_csr *H = holdout ? &Fi : &Rt;
    /* the shoppers pvg_eval_run evaluates */
    cand = malloc((nu ? nu : 1) * sizeof *cand);
    if (!cand) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        goto done;
    }
    size_t ncand = 0;
    long min_items =
        eo->protocol == PVG_EVAL_TEMPORAL ? (eo->min_user_items > 0 ? eo->min_user_items : 1) : 1;
    for (size_t u = 0; u < nu; u++) {
        if ((long)(H->indptr[u + 1] - H->indptr[u]) < min_items) continue;
        size_t nt = 0;
        for (uint64_t j = T.indptr[u]; j < T.indptr[u + 1]; j++)
            if (find_col(H, (uint32_t)u, T.indices[j]) < 0) nt++;
        if (nt) cand[ncand++] = (uint32_t)u;
    }
    st = assign_groups(ds, cand, ncand, groups, fo, &e, &users, &unlabelled, err);
    if (st != PVG_OK) goto done;
    if (e.n == 0) {
        st = pvg_error_set(err, PVG_ERR_INVALID,
                           "fairness: none of the %zu evaluated shoppers has a group label (are "
                           "the attribute file's ids those of the events?)",
                           ncand);
        goto done;
    }
    /* popularity percentiles: distinct training users per item */
    cnt = calloc(ni ? ni : 1, sizeof *cnt);
    pct = calloc(ni ? ni : 1, sizeof *pct);
    cat_of = calloc(ni ? ni : 1, sizeof *cat_of);
    if (!cnt || !pct || !cat_of) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        goto done;
    }
    for (size_t j = 0; j < Rt.nnz; j++)
        cnt[Rt.indices[j]] += 1;
    {
        /* percentile: (items less popular + half the ties other than itself)
         * / (n - 1), from the sorted counts */
        float *sorted = malloc((ni ? ni : 1) * sizeof *sorted);
        if (!sorted) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
            goto done;
        }
        memcpy(sorted, cnt, ni * sizeof *sorted);
        for (size_t gap = ni / 2; gap > 0; gap /= 2)
            for (size_t i = gap; i < ni; i++) {
                float x = sorted[i];
                size_t j = i;
                while (j >= gap && sorted[j - gap] > x) {
                    sorted[j] = sorted[j - gap];
                    j -= gap;
                }
                sorted[j] = x;
            }
        for (size_t i = 0; i < ni; i++) {
            size_t lo = 0, hi = ni;
            while (lo < hi) { /* first >= cnt[i] */
                size_t mid = (lo + hi) / 2;
                if (sorted[mid] < cnt[i])
                    lo = mid + 1;
                else
                    hi = mid;
            }
            size_t lo2 = lo, hi2 = ni;
            while (lo2 < hi2) { /* first > cnt[i] */
                size_t mid = (lo2 + hi2) / 2;
                if (sorted[mid] <= cnt[i])
                    lo2 = mid + 1;
                else
                    hi2 = mid;
            }
            double below = (double)lo, ties = (double)(lo2 - lo - 1);
            pct[i] = ni > 1 ? (float)((below + ties / 2) / (double)(ni - 1)) : 1.0f;
        }
        free(sorted);
    }
    if (fo->epsilon > 0 && fo->ledger) {
        /* the percentiles come from exact training counts: a DP release
         * from the store neither uses nor shows them */
        for (size_t i = 0; i < ni; i++)
            pct[i] = 0.5f;
        e.no_popularity = 1;
    }
    st = item_categories(ds, categories_or_null, cnt, &e, cat_of, err);
    if (st != PVG_OK) goto done;
    e.k = fo->k;
    e.phases = fo->mitigate == PVG_FAIR_MITIGATE_CALIBRATION ? 2 : 1;
    e.n_items = ni;
    e.lists = malloc(e.n * (size_t)e.phases * (size_t)e.k * sizeof *e.lists);
    e.cat_count = calloc(e.n * (size_t)e.phases * (size_t)e.n_cats, sizeof *e.cat_count);
    e.hist_share = calloc(e.n * (size_t)e.n_cats, sizeof *e.hist_share);
    if (!e.lists || !e.cat_count || !e.hist_share) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        goto done;
    }
    pvg_train_params tpr = *tp; /* recency: the split's present, as eval's */
    st = pvg_eval_recency_apply(ds, eo, role, &tpr, err);
    if (st == PVG_OK) st = pvg_model_train_matrix(ds, &Rt, &tpr, &m, NULL, err);
    if (st != PVG_OK) goto done;
    c.m = m;
    c.H = H;
    c.T = &T;
    c.holdout = holdout;
    c.users = users;
    c.e = &e;
    c.cat_of = cat_of;
    c.pct = pct;
    c.n_cand = (size_t)(e.phases > 1 ? fo->candidates : fo->k);
    c.lambda = fo->lambda;
    c.scores = calloc((size_t)threads, sizeof *c.scores);
    c.scratch = calloc((size_t)threads, sizeof *c.scratch);
    c.sc = calloc((size_t)threads, sizeof *c.sc);
    c.idx = calloc((size_t)threads, sizeof *c.idx);
    c.cal = calloc((size_t)threads, sizeof *c.cal);
    c.tbuf = calloc((size_t)threads, sizeof *c.tbuf);
    c.qc = calloc((size_t)threads, sizeof *c.qc);
    c.used = calloc((size_t)threads, sizeof *c.used);
    if (!c.scores || !c.scratch || !c.sc || !c.idx || !c.cal || !c.tbuf || !c.qc || !c.used) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        goto done;
    }
    size_t F = m->factors ? m->factors : 1;
    for (int t = 0; t < threads; t++) {
        c.scores[t] = malloc((ni ? ni : 1) * sizeof(float));
        c.scratch[t] = malloc((F * F + 2 * F) * sizeof(float));
        c.sc[t] = malloc(c.n_cand * sizeof(float));
        c.idx[t] = malloc(c.n_cand * sizeof(int64_t));
        c.cal[t] = malloc((size_t)e.k * sizeof(int64_t));
        c.tbuf[t] = malloc((ni ? ni : 1) * sizeof(uint32_t));
        c.qc[t] = malloc((size_t)e.n_cats * sizeof(double));
        c.used[t] = malloc(c.n_cand);
        if (!c.scores[t] || !c.scratch[t] || !c.sc[t] || !c.idx[t] || !c.cal[t] || !c.tbuf[t] ||
            !c.qc[t] || !c.used[t]) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
            goto done;
        }
    }
    st = pvg_parallel_for(threads, e.n, 32, fair_range, &c);
    if (st != PVG_OK) {
        st = pvg_error_set(err, st, "fairness: cannot start the scoring threads");
        goto done;
    }
    st = pvg_model_dp_info_get(m, &e.model_dp, err);
    if (st != PVG_OK) goto done;
    st = pvg_fair_report_build(&e, fo, pvg_model_type_name(tp->type),
                               pvg_eval_protocol_name(eo->protocol),
                               categories_or_null ? "file"
                                                  : "popularity tiers (20% / 60% / 20% "
                                                    "of training interactions)",
                               unlabelled, out, err);
done:
    for (int t = 0; t < threads; t++) {
        if (c.scores) free(c.scores[t]);
        if (c.scratch) free(c.scratch[t]);
        if (c.sc) free(c.sc[t]);
        if (c.idx) free(c.idx[t]);
        if (c.cal) free(c.cal[t]);
        if (c.tbuf) free(c.tbuf[t]);
        if (c.qc) free(c.qc[t]);
        if (c.used) free(c.used[t]);
    }
    free(c.scores);
    free(c.scratch);
    free(c.sc);
    free(c.idx);
    free(c.cal);
    free(c.tbuf);
    free(c.qc);
    free(c.used);
    pvg_model_free(m);
    pvg_fair_eval_free(&e);
    free(cand);
    free(users);
    free(cat_of);
    free(cnt);
    free(pct);
    free(role);
    free(keep);
    pvg_csr_free(&Rt);
    pvg_csr_free(&T);
    pvg_csr_free(&Fi);
    return st;
}

/* ==== aggregation =========================================================== */

size_t pvg_fair_stats_len(const pvg_fair_eval *e)
{
    return 2 + (size_t)e->phases * (6 + (size_t)e->n_cats);
}

int pvg_fair_stats_blocks(const pvg_fair_eval *e, int *block_of, int64_t *sens)
{
    int nb = 0;
    block_of[0] = nb;
    sens[nb++] = 1;
    block_of[1] = nb;
    sens[nb++] = PVG_FAIR_Q;
    for (int p = 0; p < e->phases; p++) {
        size_t o = 2 + (size_t)p * (6 + (size_t)e->n_cats);
        for (int j = 0; j < 5; j++) {
            block_of[o + (size_t)j] = nb;
            sens[nb++] = PVG_FAIR_Q;
        }
        block_of[o + 5] = nb;
        sens[nb++] = e->k; /* distinct items: a shopper's list adds at most k */
        for (int c = 0; c < e->n_cats; c++)
            block_of[o + 6 + (size_t)c] = nb;
        sens[nb++] = e->k; /* slots per category: k slots in all */
    }
    return nb;
}

static int64_t quant(double x)
{
    if (!(x > 0)) return 0;
    if (x >= 1) return PVG_FAIR_Q;
    return (int64_t)llround(x * PVG_FAIR_Q);
}

int pvg_fair_stats(const pvg_fair_eval *e, int64_t *stats)
{
    size_t len = pvg_fair_stats_len(e);
    memset(stats, 0, (size_t)e->n_groups * len * sizeof *stats);
    for (size_t a = 0; a < e->n; a++) {
        const pvg_fair_user *u = &e->u[a];
        int64_t *s = stats + (size_t)u->group * len;
        s[0] += 1;
        s[1] += quant(u->pop_hist);
        for (int p = 0; p < e->phases; p++) {
            int64_t *o = s + 2 + (size_t)p * (6 + (size_t)e->n_cats);
            o[0] += quant(u->recall[p]);
            o[1] += quant((double)u->recall[p] * u->recall[p]);
            o[2] += quant(u->ndcg[p]);
            o[3] += quant((double)u->ndcg[p] * u->ndcg[p]);
            o[4] += quant(u->pop_rec[p]);
            const uint16_t *cc = e->cat_count + (a * (size_t)e->phases + (size_t)p) * e->n_cats;
            for (int c = 0; c < e->n_cats; c++)
                o[6 + c] += cc[c];
        }
    }
    unsigned char *seen = malloc(e->n_items ? e->n_items : 1);
    if (!seen) return -1;
    for (int g = 0; g < e->n_groups; g++)
        for (int p = 0; p < e->phases; p++) {
            memset(seen, 0, e->n_items);
            int64_t distinct = 0;
            for (size_t a = 0; a < e->n; a++) {
                if (e->u[a].group != g) continue;
                const int64_t *l = e->lists + (a * (size_t)e->phases + (size_t)p) * (size_t)e->k;
                for (int j = 0; j < e->k; j++)
                    if (l[j] >= 0 && !seen[l[j]]) {
                        seen[l[j]] = 1;
                        distinct++;
                    }
            }
            stats[(size_t)g * len + 2 + (size_t)p * (6 + (size_t)e->n_cats) + 5] = distinct;
        }
    free(seen);
    return 0;
}

enum { M_RECALL, M_NDCG, M_POPBIAS, M_MISCAL, N_M };
static const char *const M_NAMES[N_M] = {"recall", "ndcg", "popularity_bias", "miscalibration"};

static double metric_of(const pvg_fair_user *u, int m, int p)
{
    switch (m) {
    case M_RECALL:
        return u->recall[p];
    case M_NDCG:
        return u->ndcg[p];
    case M_POPBIAS:
        return (double)u->pop_rec[p] - (double)u->pop_hist;
    default:
        return u->miscal[p];
    }
}

/* A group's (or the rest's) estimates in one phase. se NAN: no interval. */
typedef struct est {
    double n;
    double mean[N_M], se[N_M];
    int has[N_M];
    double lo[N_M], hi[N_M]; /* interval of the mean */
    double coverage, pop_rec, pop_hist;
} est;

static double pctl(double *v, size_t n, double q)
{
    /* v sorted ascending; linear interpolation */
    if (!n) return NAN;
    double pos = q * (double)(n - 1);
    size_t i = (size_t)floor(pos);
    double f = pos - (double)i;
    return i + 1 < n ? v[i] * (1 - f) + v[i + 1] * f : v[n - 1];
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static json_t *ci_json(double lo, double hi)
{
    if (!isfinite(lo) || !isfinite(hi)) return json_null();
    json_t *a = json_array();
    json_array_append_new(a, json_real(lo));
    json_array_append_new(a, json_real(hi));
    return a;
}

static uint64_t boot_next(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Gap entries of one metric: max - min (the pair fixed by the point
 * estimates) and each group minus the rest. boot: NULL for the normal
 * approximation, else samples [pair B][rest G*B]. */
static json_t *gap_json(const est *G, int ng, const est *rest, int m, const char *const *names,
                        const double *pair_s, const double *rest_s, int B, double *scratch)
{
    json_t *o = json_object();
    int gmax = -1, gmin = -1;
    for (int g = 0; g < ng; g++) {
        if (!G[g].has[m]) continue;
        if (gmax < 0 || G[g].mean[m] > G[gmax].mean[m]) gmax = g;
        if (gmin < 0 || G[g].mean[m] < G[gmin].mean[m]) gmin = g;
    }
    if (gmax < 0) {
        json_decref(o);
        return json_null();
    }
    double d = G[gmax].mean[m] - G[gmin].mean[m], lo = NAN, hi = NAN;
    if (pair_s && B > 0) {
        memcpy(scratch, pair_s, (size_t)B * sizeof *scratch);
        qsort(scratch, (size_t)B, sizeof *scratch, cmp_dbl);
        lo = pctl(scratch, (size_t)B, 0.025);
        hi = pctl(scratch, (size_t)B, 0.975);
    } else if (isfinite(G[gmax].se[m]) && isfinite(G[gmin].se[m]) && gmax != gmin) {
        double se = sqrt(G[gmax].se[m] * G[gmax].se[m] + G[gmin].se[m] * G[gmin].se[m]);
        lo = d - 1.96 * se;
        hi = d + 1.96 * se;
    }
    json_object_set_new(o, "max_minus_min", json_real(d));
    json_object_set_new(o, "ci", ci_json(lo, hi));
    json_object_set_new(o, "max_group", json_string(names[gmax]));
    json_object_set_new(o, "min_group", json_string(names[gmin]));
    json_t *vr = json_array();
    for (int g = 0; g < ng && ng > 1; g++) {
        if (!G[g].has[m] || !rest[g].has[m]) continue;
        json_t *x = json_object();
        double dd = G[g].mean[m] - rest[g].mean[m];
        double l2 = NAN, h2 = NAN;
        if (rest_s && B > 0) {
            memcpy(scratch, rest_s + (size_t)g * (size_t)B, (size_t)B * sizeof *scratch);
            qsort(scratch, (size_t)B, sizeof *scratch, cmp_dbl);
            l2 = pctl(scratch, (size_t)B, 0.025);
            h2 = pctl(scratch, (size_t)B, 0.975);
        } else if (isfinite(G[g].se[m]) && isfinite(rest[g].se[m])) {
            double se = sqrt(G[g].se[m] * G[g].se[m] + rest[g].se[m] * rest[g].se[m]);
            l2 = dd - 1.96 * se;
            h2 = dd + 1.96 * se;
        }
        json_object_set_new(x, "group", json_string(names[g]));
        json_object_set_new(x, "diff", json_real(dd));
        json_object_set_new(x, "ci", ci_json(l2, h2));
        json_array_append_new(vr, x);
    }
    json_object_set_new(o, "vs_rest", vr);
    return o;
}

/* Estimates from sums: S[m], S2[m] (S2 NAN: no variance), n, and the noise
 * variance of S (value units) and of n. */
static void est_from(est *x, double n, const double *S, const double *S2, const double *varS,
                     double varN)
{
    x->n = n;
    double nn = n > 1 ? n : 1;
    for (int m = 0; m < N_M; m++) {
        x->has[m] = isfinite(S[m]);
        x->mean[m] = S[m] / nn;
        x->se[m] = NAN;
        x->lo[m] = x->hi[m] = NAN;
        if (!x->has[m] || !isfinite(S2[m])) continue;
        double var = S2[m] / nn - x->mean[m] * x->mean[m];
        if (var < 0) var = 0;
        /* sampling, the noise of the sum, and (delta method) of the count */
        double se2 = var / nn + (varS ? varS[m] / (nn * nn) : 0) +
                     x->mean[m] * x->mean[m] * varN / (nn * nn);
        x->se[m] = sqrt(se2);
        x->lo[m] = x->mean[m] - 1.96 * x->se[m];
        x->hi[m] = x->mean[m] + 1.96 * x->se[m];
    }
}

static json_t *group_json(const char *name, const est *x, const pvg_fair_eval *e,
                          const double *exposure, const double *history, int dp)
{
    json_t *o = json_object();
    json_object_set_new(o, "group", json_string(name));
    json_object_set_new(o, "users", json_integer((json_int_t)llround(x->n)));
    for (int m = 0; m < N_M; m++) {
        if (!x->has[m]) {
            if (m == M_MISCAL && dp) continue;
            json_object_set_new(o, M_NAMES[m], json_null());
            continue;
        }
        json_object_set_new(o, M_NAMES[m], json_real(x->mean[m]));
        char key[64];
        snprintf(key, sizeof key, "%s_ci", M_NAMES[m]);
        /* an interval of the metric's own range (post-processing) */
        double lo = x->lo[m], hi = x->hi[m];
        double rlo = m == M_POPBIAS ? -1 : 0, rhi = m == M_MISCAL ? INFINITY : 1;
        if (lo < rlo) lo = rlo;
        if (hi > rhi) hi = rhi;
        json_object_set_new(o, key, ci_json(lo, hi));
    }
    json_object_set_new(o, "popularity_recommended", json_real(x->pop_rec));
    if (isfinite(x->pop_hist)) json_object_set_new(o, "popularity_history", json_real(x->pop_hist));
    json_object_set_new(o, "coverage", json_real(x->coverage));
    json_t *ex = json_object();
    for (int c = 0; c < e->n_cats; c++)
        json_object_set_new(ex, e->cat_names[c], json_real(exposure[c]));
    json_object_set_new(o, "exposure", ex);
    if (history) {
        json_t *h = json_object();
        for (int c = 0; c < e->n_cats; c++)
            json_object_set_new(h, e->cat_names[c], json_real(history[c]));
        json_object_set_new(o, "history", h);
    }
    return o;
}

static json_t *overall_json(const est *x)
{
    json_t *o = json_object();
    json_object_set_new(o, "users", json_integer((json_int_t)llround(x->n)));
    for (int m = 0; m < N_M; m++)
        if (x->has[m]) json_object_set_new(o, M_NAMES[m], json_real(x->mean[m]));
    json_object_set_new(o, "coverage", json_real(x->coverage));
    return o;
}

pvg_status pvg_fair_report_build(const pvg_fair_eval *e, const pvg_fair_options *fo,
                                 const char *model, const char *protocol, const char *cat_source,
                                 long unlabelled, pvg_fair_report **out, pvg_error *err)
{
    *out = NULL;
    int G = e->n_groups, P = e->phases, nc = e->n_cats, dp = fo->epsilon > 0;
    size_t len = pvg_fair_stats_len(e);
    int B = dp ? 0 : fo->bootstrap;
    pvg_status st = PVG_OK;
    pvg_rng *own = NULL;
    json_t *root = json_object();
    int64_t *stats = malloc(((size_t)G + 1) * len * sizeof *stats);
    double *noisy = malloc(((size_t)G + 1) * len * sizeof *noisy);
    int *block_of = malloc(len * sizeof *block_of);
    int64_t *sens = malloc(len * sizeof *sens);
    double *noise_var = calloc(len, sizeof *noise_var); /* per coordinate, stat units */
    est *ge = calloc((size_t)G * 2 + 2, sizeof *ge);
    est *re = calloc((size_t)G * 2 + 2, sizeof *re);
    double *expo = calloc(((size_t)G + 1) * (size_t)nc * 2, sizeof *expo);
    double *hist = calloc(((size_t)G + 1) * (size_t)nc, sizeof *hist);
    size_t nmb = (size_t)N_M * (size_t)P;
    double *bs_pair = B ? malloc(nmb * (size_t)B * sizeof(double)) : NULL;
    double *bs_rest = B ? malloc(nmb * (size_t)G * (size_t)B * sizeof(double)) : NULL;
    double *bs_grp = B ? malloc(nmb * (size_t)G * (size_t)B * sizeof(double)) : NULL;
    double *scratch = malloc(((size_t)B + 1) * sizeof *scratch);
    size_t *members = malloc((e->n ? e->n : 1) * sizeof *members);
    size_t *gstart = calloc((size_t)G + 1, sizeof *gstart);
    if (!root || !stats || !noisy || !block_of || !sens || !noise_var || !ge || !re || !expo ||
        !hist || (B && (!bs_pair || !bs_rest || !bs_grp)) || !scratch || !members || !gstart ||
        pvg_fair_stats(e, stats) != 0) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        goto done;
    }
    pvg_fair_stats_blocks(e, block_of, sens);
    int n_blocks = 2 + 7 * P;
    /* ---- the DP release of the per-group statistics ---- */
    double eps_b = dp ? fo->epsilon / n_blocks : 0;
    if (dp) {
        pvg_rng *rng = fo->rng;
        if (!rng) {
            own = pvg_rng_new_secure();
            if (!own) {
                st = pvg_error_set(err, PVG_ERR_INTERNAL, "fairness: no secure generator");
                goto done;
            }
            rng = own;
        }
        for (int g = 0; g < G && st == PVG_OK; g++)
            for (size_t j = 0; j < len && st == PVG_OK; j++) {
                int64_t v;
                pvg_dp_noise_info info;
                st = pvg_dp_laplace_int(rng, stats[(size_t)g * len + j], sens[block_of[j]], eps_b,
                                        fo->allow_insecure_rng, &v, &info, err);
                noisy[(size_t)g * len + j] = (double)v;
                noise_var[j] = 2 * info.scale * info.scale;
            }
        if (st != PVG_OK) goto done;
    } else {
        for (size_t j = 0; j < (size_t)G * len; j++)
            noisy[j] = (double)stats[j];
    }
    /* group members, in order */
    for (size_t a = 0; a < e->n; a++)
        gstart[e->u[a].group + 1]++;
    for (int g = 0; g < G; g++)
        gstart[g + 1] += gstart[g];
    {
        size_t *fill = calloc((size_t)G + 1, sizeof *fill);
        if (!fill) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
            goto done;
        }
        for (size_t a = 0; a < e->n; a++) {
            int g = e->u[a].group;
            members[gstart[g] + fill[g]++] = a;
        }
        free(fill);
    }
    /* ---- estimates per group and phase (index p * (G + 1) + g; g == G: all) ---- */
    double nQ = PVG_FAIR_Q;
    for (int p = 0; p < P; p++) {
        double tot_S[N_M] = {0}, tot_S2[N_M] = {0}, tot_n = 0, tot_v[N_M] = {0}, tot_vn = 0;
        double tot_pr = 0, tot_ph = 0;
        for (int g = 0; g <= G; g++) {
            double S[N_M], S2[N_M], vS[N_M] = {0}, n;
            est *x = &ge[p * (G + 1) + g];
            if (g == G) { /* everyone */
                n = tot_n;
                memcpy(S, tot_S, sizeof S);
                memcpy(S2, tot_S2, sizeof S2);
                memcpy(vS, tot_v, sizeof vS);
                est_from(x, n, S, S2, dp ? vS : NULL, dp ? tot_vn : 0);
                x->pop_rec = e->no_popularity ? NAN : tot_pr / (n > 1 ? n : 1);
                x->pop_hist = e->no_popularity ? NAN : tot_ph / (n > 1 ? n : 1);
            } else if (dp) {
                const double *s = noisy + (size_t)g * len;
                const double *o = s + 2 + (size_t)p * (6 + (size_t)nc);
                size_t oo = 2 + (size_t)p * (6 + (size_t)nc);
                n = s[0] > 1 ? s[0] : 1;
                S[M_RECALL] = o[0] / nQ;
                S2[M_RECALL] = o[1] / nQ;
                S[M_NDCG] = o[2] / nQ;
                S2[M_NDCG] = o[3] / nQ;
                S[M_POPBIAS] = e->no_popularity ? NAN : (o[4] - s[1]) / nQ;
                S2[M_POPBIAS] = NAN;
                S[M_MISCAL] = NAN;
                S2[M_MISCAL] = NAN;
                vS[M_RECALL] = noise_var[oo] / (nQ * nQ);
                vS[M_NDCG] = noise_var[oo + 2] / (nQ * nQ);
                est_from(x, n, S, S2, vS, noise_var[0]);
                for (int m = 0; m < N_M; m++) /* clamp to the metric's range */
                    if (x->has[m] && m != M_POPBIAS) {
                        x->mean[m] = x->mean[m] < 0 ? 0 : x->mean[m] > 1 ? 1 : x->mean[m];
                    }
                x->pop_rec = e->no_popularity ? NAN : o[4] / nQ / n;
                x->pop_hist = e->no_popularity ? NAN : s[1] / nQ / n;
                x->coverage = e->n_items ? (o[5] > 0 ? o[5] : 0) / (double)e->n_items : 0;
                double slots = 0;
                for (int c = 0; c < nc; c++)
                    slots += o[6 + c] > 0 ? o[6 + c] : 0;
                for (int c = 0; c < nc; c++)
                    expo[((size_t)p * (G + 1) + g) * nc + c] =
                        slots > 0 ? (o[6 + c] > 0 ? o[6 + c] : 0) / slots : 0;
                tot_pr += o[4] / nQ;
                tot_ph += s[1] / nQ;
            } else {
                n = (double)(gstart[g + 1] - gstart[g]);
                for (int m = 0; m < N_M; m++)
                    S[m] = S2[m] = 0;
                double pr = 0, ph = 0;
                for (size_t i = gstart[g]; i < gstart[g + 1]; i++) {
                    const pvg_fair_user *u = &e->u[members[i]];
                    for (int m = 0; m < N_M; m++) {
                        double v = metric_of(u, m, p);
                        S[m] += v;
                        S2[m] += v * v;
                    }
                    pr += u->pop_rec[p];
                    ph += u->pop_hist;
                    const float *hs = e->hist_share + members[i] * (size_t)nc;
                    if (p == 0)
                        for (int c = 0; c < nc; c++)
                            hist[(size_t)g * nc + c] += hs[c] / n;
                }
                est_from(x, n, S, S2, NULL, 0);
                x->pop_rec = pr / n;
                x->pop_hist = ph / n;
                const int64_t *o = stats + (size_t)g * len + 2 + (size_t)p * (6 + (size_t)nc);
                x->coverage = e->n_items ? (double)o[5] / (double)e->n_items : 0;
                double slots = 0;
                for (int c = 0; c < nc; c++)
                    slots += (double)o[6 + c];
                for (int c = 0; c < nc; c++)
                    expo[((size_t)p * (G + 1) + g) * nc + c] = slots > 0 ? o[6 + c] / slots : 0;
                tot_pr += pr;
                tot_ph += ph;
            }
            if (g < G) {
                tot_n += n;
                tot_vn += dp ? noise_var[0] : 0;
                for (int m = 0; m < N_M; m++) {
                    tot_S[m] += x->has[m] ? S[m] : NAN;
                    tot_S2[m] += S2[m];
                    tot_v[m] += vS[m];
                }
            }
        }
        /* the rest of each group */
        for (int g = 0; g < G; g++) {
            double S[N_M], S2[N_M], vS[N_M], n = 0;
            for (int m = 0; m < N_M; m++)
                S[m] = S2[m] = vS[m] = 0;
            for (int h = 0; h < G; h++) {
                if (h == g) continue;
                const est *y = &ge[p * (G + 1) + h];
                double nh = y->n > 1 ? y->n : 1;
                n += y->n;
                for (int m = 0; m < N_M; m++) {
                    S[m] += y->has[m] ? y->mean[m] * nh : NAN;
                    /* sum of squares back from mean and se (exact: var/n) */
                    double var = isfinite(y->se[m]) ? y->se[m] * y->se[m] * nh : NAN;
                    S2[m] += isfinite(var) ? (var + y->mean[m] * y->mean[m]) * nh : NAN;
                    vS[m] += 0;
                }
            }
            est_from(&re[p * (G + 1) + g], n, S, S2, NULL, 0);
        }
        /* the whole population's coverage */
        {
            unsigned char *seen = calloc(e->n_items ? e->n_items : 1, 1);
            if (!seen) {
                st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
                goto done;
            }
            size_t distinct = 0;
            if (dp) { /* not released: the largest group's noisy count bounds it from below */
                for (int g = 0; g < G; g++)
                    if (ge[p * (G + 1) + g].coverage > ge[p * (G + 1) + G].coverage)
                        ge[p * (G + 1) + G].coverage = ge[p * (G + 1) + g].coverage;
            } else {
                for (size_t a = 0; a < e->n; a++) {
                    const int64_t *l = e->lists + (a * (size_t)P + (size_t)p) * (size_t)e->k;
                    for (int j = 0; j < e->k; j++)
                        if (l[j] >= 0 && !seen[l[j]]) {
                            seen[l[j]] = 1;
                            distinct++;
                        }
                }
                ge[p * (G + 1) + G].coverage =
                    e->n_items ? (double)distinct / (double)e->n_items : 0;
            }
            free(seen);
        }
    }
    /* ---- the bootstrap (exact mode) ---- */
    if (B) {
        uint64_t rs = fo->seed ^ 0x6661697242ULL;
        double *sum = calloc(nmb * (size_t)G, sizeof *sum);
        if (!sum) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
            goto done;
        }
        for (int b = 0; b < B; b++) {
            memset(sum, 0, nmb * (size_t)G * sizeof *sum);
            for (int g = 0; g < G; g++) {
                size_t ng = gstart[g + 1] - gstart[g];
                for (size_t i = 0; i < ng; i++) {
                    const pvg_fair_user *u = &e->u[members[gstart[g] + boot_next(&rs) % ng]];
                    for (int p = 0; p < P; p++)
                        for (int m = 0; m < N_M; m++)
                            sum[((size_t)p * N_M + m) * G + g] += metric_of(u, m, p);
                }
            }
            for (int p = 0; p < P; p++)
                for (int m = 0; m < N_M; m++) {
                    size_t pm = (size_t)p * N_M + m;
                    double tot = 0, totn = 0;
                    for (int g = 0; g < G; g++) {
                        tot += sum[pm * G + g];
                        totn += (double)(gstart[g + 1] - gstart[g]);
                    }
                    int gmax = -1, gmin = -1;
                    for (int g = 0; g < G; g++) {
                        const est *x = &ge[p * (G + 1) + g];
                        if (gmax < 0 || x->mean[m] > ge[p * (G + 1) + gmax].mean[m]) gmax = g;
                        if (gmin < 0 || x->mean[m] < ge[p * (G + 1) + gmin].mean[m]) gmin = g;
                    }
                    for (int g = 0; g < G; g++) {
                        double ng = (double)(gstart[g + 1] - gstart[g]);
                        double mg = sum[pm * G + g] / ng;
                        bs_grp[(pm * G + g) * B + b] = mg;
                        bs_rest[(pm * G + g) * B + b] =
                            totn > ng ? mg - (tot - sum[pm * G + g]) / (totn - ng) : NAN;
                    }
                    bs_pair[pm * B + b] =
                        bs_grp[(pm * G + gmax) * B + b] - bs_grp[(pm * G + gmin) * B + b];
                }
        }
        free(sum);
        for (int p = 0; p < P; p++)
            for (int m = 0; m < N_M; m++)
                for (int g = 0; g < G; g++) {
                    size_t pm = (size_t)p * N_M + m;
                    memcpy(scratch, bs_grp + (pm * G + g) * B, (size_t)B * sizeof *scratch);
                    qsort(scratch, (size_t)B, sizeof *scratch, cmp_dbl);
                    ge[p * (G + 1) + g].lo[m] = pctl(scratch, (size_t)B, 0.025);
                    ge[p * (G + 1) + g].hi[m] = pctl(scratch, (size_t)B, 0.975);
                }
    }
    /* ---- the report ---- */
    {
        char when[32];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        json_object_set_new(root, "generated", json_string(when));
        json_object_set_new(root, "group_by",
                            json_string(fo->group_by && *fo->group_by ? fo->group_by : "group"));
        json_object_set_new(root, "k", json_integer(e->k));
        json_object_set_new(root, "model", json_string(model ? model : "?"));
        json_object_set_new(root, "protocol", json_string(protocol ? protocol : "?"));
        json_t *ci = json_object();
        json_object_set_new(ci, "level", json_real(0.95));
        json_object_set_new(ci, "method",
                            json_string(dp  ? "normal (DP: noise variance included)"
                                        : B ? "bootstrap (shoppers resampled within each group, "
                                              "percentile)"
                                            : "normal"));
        if (B) json_object_set_new(ci, "resamples", json_integer(B));
        json_object_set_new(root, "ci", ci);
        json_t *cats = json_object();
        json_object_set_new(cats, "source", json_string(cat_source ? cat_source : "?"));
        json_t *cn = json_array();
        for (int c = 0; c < nc; c++)
            json_array_append_new(cn, json_string(e->cat_names[c]));
        json_object_set_new(cats, "names", cn);
        json_object_set_new(root, "categories", cats);
        json_object_set_new(root, "min_group_users", json_integer(fo->min_group_users));
        if (!dp) {
            json_object_set_new(root, "users_evaluated", json_integer((json_int_t)e->n));
            json_object_set_new(root, "users_unlabelled", json_integer(unlabelled));
        }
        for (int p = 0; p < P; p++) {
            json_t *groups = json_array();
            for (int g = 0; g < G; g++)
                json_array_append_new(groups, group_json(e->group_names[g], &ge[p * (G + 1) + g], e,
                                                         expo + ((size_t)p * (G + 1) + g) * nc,
                                                         dp ? NULL : hist + (size_t)g * nc, dp));
            json_t *gaps = json_object();
            for (int m = 0; m < N_M; m++) {
                if (dp && m == M_MISCAL) continue;
                size_t pm = (size_t)p * N_M + m;
                json_object_set_new(gaps, M_NAMES[m],
                                    gap_json(ge + p * (G + 1), G, re + p * (G + 1), m,
                                             (const char *const *)e->group_names,
                                             B ? bs_pair + pm * B : NULL,
                                             B ? bs_rest + pm * G * B : NULL, B, scratch));
            }
            /* coverage: point gaps only (it is not a mean over shoppers) */
            {
                int gmax = 0, gmin = 0;
                for (int g = 1; g < G; g++) {
                    if (ge[p * (G + 1) + g].coverage > ge[p * (G + 1) + gmax].coverage) gmax = g;
                    if (ge[p * (G + 1) + g].coverage < ge[p * (G + 1) + gmin].coverage) gmin = g;
                }
                json_t *cv = json_object();
                json_object_set_new(
                    cv, "max_minus_min",
                    json_real(ge[p * (G + 1) + gmax].coverage - ge[p * (G + 1) + gmin].coverage));
                json_object_set_new(cv, "ci", json_null());
                json_object_set_new(cv, "max_group", json_string(e->group_names[gmax]));
                json_object_set_new(cv, "min_group", json_string(e->group_names[gmin]));
                json_object_set_new(gaps, "coverage", cv);
            }
            if (p == 0) {
                json_object_set_new(root, "groups", groups);
                json_object_set_new(root, "gaps", gaps);
                json_object_set_new(root, "overall", overall_json(&ge[G]));
            } else {
                json_t *mt = json_object();
                json_object_set_new(mt, "method", json_string("calibration"));
                json_object_set_new(mt, "lambda", json_real(fo->lambda));
                json_object_set_new(mt, "candidates", json_integer(fo->candidates));
                json_object_set_new(mt, "groups", groups);
                json_object_set_new(mt, "gaps", gaps);
                json_object_set_new(mt, "overall_before", overall_json(&ge[G]));
                json_object_set_new(mt, "overall_after", overall_json(&ge[(G + 1) + G]));
                json_object_set_new(root, "mitigation", mt);
            }
        }
        if (P == 1) json_object_set_new(root, "mitigation", json_null());
        if (dp) {
            json_t *d = json_object();
            json_object_set_new(d, "epsilon", json_real(fo->epsilon));
            json_object_set_new(d, "delta", json_real(0));
            json_object_set_new(d, "mechanism", json_string("discrete-laplace"));
            json_object_set_new(d, "blocks", json_integer(n_blocks));
            json_object_set_new(d, "scope",
                                json_string("each shopper's contribution to the evaluation sums "
                                            "given the trained model (docs/fairness.md)"));
            json_object_set_new(root, "dp", d);
        } else {
            json_object_set_new(root, "dp", json_null());
        }
    }
    /* ---- the ledger: charged before the release leaves ---- */
    if (dp && fo->ledger) {
        char what[160];
        snprintf(what, sizeof what, "fairness audit by %s (%d groups, k=%d)",
                 fo->group_by ? fo->group_by : "group", G, e->k);
        int64_t rid;
        /* the model's own guarantee first, then the sums' (sequential
         * composition: a refusal of either releases nothing) */
        const pvg_model_dp_info mi = e->model_dp;
        if (!mi.is_dp)
            st = pvg_error_set(err, PVG_ERR_POLICY, "fairness: the model is not DP-trained");
        int own_txn = st == PVG_OK && pvg_store_begin(fo->ledger, err) == PVG_OK;
        if (st == PVG_OK && !own_txn) st = err ? err->code : PVG_ERR_IO;
        int64_t mrid = 0;
        char mwhat[200];
        snprintf(mwhat, sizeof mwhat, "model of the %s", what);
        if (st == PVG_OK)
            st = pvg_ledger_charge(fo->ledger, PVG_FAIR_LEDGER_LABEL, mwhat, mi.mechanism,
                                   mi.epsilon, mi.delta, &mrid, err);
        if (st == PVG_OK)
            st = pvg_ledger_charge(fo->ledger, PVG_FAIR_LEDGER_LABEL, what, "discrete-laplace",
                                   fo->epsilon, 0, &rid, err);
        if (own_txn) {
            if (st == PVG_OK)
                st = pvg_store_commit(fo->ledger, err);
            else
                pvg_store_rollback(fo->ledger);
        }
        if (st != PVG_OK) goto done;
        json_t *dj = json_object_get(root, "dp");
        json_object_set_new(dj, "model_release_id", json_integer(mrid));
        json_object_set_new(dj, "model_epsilon", json_real(mi.epsilon));
        json_object_set_new(dj, "model_delta", json_real(mi.delta));
        json_object_set_new(dj, "model_mechanism", json_string(mi.mechanism));
        json_object_set_new(dj, "scope",
                            json_string("each shopper's events: the model DP-trained "
                                        "(model_epsilon, model_delta), the evaluation sums "
                                        "(epsilon); the total is their sum (docs/fairness.md)"));
        json_object_set_new(json_object_get(root, "dp"), "release_id", json_integer(rid));
    }
    *out = malloc(sizeof **out);
    if (!*out) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
        goto done;
    }
    (*out)->j = root;
    root = NULL;
done:
    json_decref(root);
    pvg_rng_free(own);
    free(stats);
    free(noisy);
    free(block_of);
    free(sens);
    free(noise_var);
    free(ge);
    free(re);
    free(expo);
    free(hist);
    free(bs_pair);
    free(bs_rest);
    free(bs_grp);
    free(scratch);
    free(members);
    free(gstart);
    return st;
}

/* ==== the report ============================================================ */

void pvg_fair_report_free(pvg_fair_report *r)
{
    if (!r) return;
    json_decref(r->j);
    free(r);
}

char *pvg_fair_report_json(const pvg_fair_report *r)
{
    return json_dumps(r->j, JSON_INDENT(2) | JSON_REAL_PRECISION(6) | JSON_PRESERVE_ORDER);
}

static int is_report(const char *json)
{
    json_error_t je;
    json_t *j = json_loads(json, 0, &je);
    int ok = json_is_object(j) && json_is_array(json_object_get(j, "groups"));
    json_decref(j);
    return ok;
}

pvg_status pvg_fair_report_save(const char *data_dir, const char *json, pvg_error *err)
{
    if (!json || !is_report(json))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "fairness: not a report (a JSON object with \"groups\")");
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", data_dir, PVG_FAIR_REPORT_FILE);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    /* the name is predictable: whatever is there (a crashed run's file, a planted link) goes,
       and the file is made afresh, never through a link nor with an older file's mode */
    (void)unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return pvg_error_set_at(err, PVG_ERR_IO, tmp, 0, 0, -1, "cannot create: %s",
                                strerror(errno));
    size_t n = strlen(json), off = 0;
    pvg_status st = PVG_OK;
    while (off < n) {
        ssize_t w = write(fd, json + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            st = pvg_error_set_at(err, PVG_ERR_IO, tmp, 0, 0, (long long)off, "write: %s",
                                  strerror(errno));
            break;
        }
        off += (size_t)w;
    }
    if (st == PVG_OK && fsync(fd) != 0)
        st = pvg_error_set_at(err, PVG_ERR_IO, tmp, 0, 0, -1, "fsync: %s", strerror(errno));
    close(fd);
    if (st == PVG_OK && rename(tmp, path) != 0)
        st = pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot rename into place: %s",
                              strerror(errno));
    if (st != PVG_OK) {
        unlink(tmp);
        return st;
    }
    int dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return PVG_OK;
}

pvg_status pvg_fair_report_load(const char *data_dir, char **json, pvg_error *err)
{
    *json = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", data_dir, PVG_FAIR_REPORT_FILE);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC); /* never through a link */
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0) close(fd);
        errno = e;
        if (errno == ENOENT)
            return pvg_error_set(err, PVG_ERR_NOT_FOUND,
                                 "no fairness report saved (privguide audit fairness --save)");
        if (errno == ELOOP)
            return pvg_error_set_at(err, PVG_ERR_PERMISSION, path, 0, 0, -1,
                                    "is a symbolic link: the saved report is read only from the "
                                    "data dir's own file");
        return pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "cannot open: %s",
                                strerror(errno));
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    pvg_status st = PVG_OK;
    while (buf) {
        if (n + 1 >= cap) {
            if (cap >= (64u << 20)) {
                st = pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, -1, "larger than 64 MiB");
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    if (!buf) st = pvg_error_set(err, PVG_ERR_NOMEM, "fairness: out of memory");
    if (st == PVG_OK && ferror(f))
        st = pvg_error_set_at(err, PVG_ERR_IO, path, 0, 0, -1, "read error");
    fclose(f);
    if (st == PVG_OK) {
        buf[n] = 0;
        if (!is_report(buf))
            st = pvg_error_set_at(err, PVG_ERR_CORRUPT, path, 0, 0, -1,
                                  "not a fairness report (a JSON object with \"groups\")");
    }
    if (st != PVG_OK) {
        free(buf);
        return st;
    }
    *json = buf;
    return PVG_OK;
}
