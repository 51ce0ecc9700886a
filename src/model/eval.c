/*
 * eval.c - the evaluation harness: deterministic splits (random-split,
 * holdout-users, temporal, and validation splits carved from their training
 * parts), training on the training part, scoring every evaluated user and
 * the ranking metrics of privguide/eval.h.
 */
#include "model/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

pvg_status pvg_model_train_matrix(const pvg_dataset *ds, const pvg_csr *R,
                                  const pvg_train_params *p, pvg_model **out,
                                  pvg_train_stats *stats, pvg_error *err);

static const char *const proto_names[] = {NULL, "random-split", "holdout-users", "temporal"};

const char *pvg_eval_protocol_name(pvg_eval_protocol p)
{
    return (p >= PVG_EVAL_RANDOM_SPLIT && p <= PVG_EVAL_TEMPORAL) ? proto_names[p] : "?";
}

pvg_status pvg_eval_protocol_parse(const char *name, pvg_eval_protocol *out, pvg_error *err)
{
    for (int p = PVG_EVAL_RANDOM_SPLIT; p <= PVG_EVAL_TEMPORAL; p++)
        if (name && strcmp(name, proto_names[p]) == 0) {
            *out = (pvg_eval_protocol)p;
            return PVG_OK;
        }
    return pvg_error_set(err, PVG_ERR_INVALID,
                         "unknown protocol '%s' (expected random-split, holdout-users or temporal)",
                         name ? name : "");
}

void pvg_eval_options_default(pvg_eval_protocol p, pvg_eval_options *o)
{
    memset(o, 0, sizeof *o);
    o->protocol = p;
    o->test_fraction = 0.25;
    o->heldout_users = 100;
    o->min_user_items = 1;
    o->seed = 42;
    o->n_ks = 4;
    o->ks[0] = 10;
    o->ks[1] = 20;
    o->ks[2] = 50;
    o->ks[3] = 100;
    o->threads = 1;
}

/* splitmix64: statistical shuffles, seeded per user so splits do not depend
 * on iteration order or threads. */
static uint64_t mix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t *x, uint64_t n)
{
    return n ? mix(x) % n : 0;
}

/* Marks, in each row of F with at least 2 cells and selected by `rows`
 * (NULL: all), round(frac * n) cells (at least 1, at most n - 1) as `hold`,
 * the others `keep`; cells of unselected rows are left alone. */
static void split_rows(const pvg_csr *F, const uint8_t *rows, uint8_t row_want, double frac,
                       uint64_t seed, uint8_t *cell_role, uint8_t keep, uint8_t hold)
{
    size_t cap = 0;
    uint64_t *perm = NULL;
    for (size_t u = 0; u < F->n_rows; u++) {
        if (rows && rows[u] != row_want) continue;
        uint64_t b = F->indptr[u], n = F->indptr[u + 1] - b;
        int eligible = 1;
        if (!rows)
            for (uint64_t j = b; j < b + n; j++)
                if (cell_role[j] != keep) eligible = 0; /* only rows fully in `keep` */
        if (!eligible) continue;
        if (n < 2) continue;
        if (n > cap) {
            uint64_t *np = realloc(perm, n * sizeof *np);
            if (!np) break;
            perm = np;
            cap = n;
        }
        for (uint64_t j = 0; j < n; j++)
            perm[j] = j;
        uint64_t st = seed ^ (0x5851f42d4c957f2dULL * (u + 1));
        for (uint64_t j = n - 1; j > 0; j--) {
            uint64_t r = below(&st, j + 1), t = perm[j];
            perm[j] = perm[r];
            perm[r] = t;
        }
        uint64_t nh = (uint64_t)floor(frac * (double)n + 0.5);
        if (nh < 1) nh = 1;
        if (nh > n - 1) nh = n - 1;
        for (uint64_t j = 0; j < n; j++)
            cell_role[b + perm[j]] = j < nh ? hold : keep;
    }
    free(perm);
}

static int64_t find_cell(const pvg_csr *F, uint32_t u, uint32_t i)
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

/* The temporal split's training boundary: events before it train. */
static int64_t temporal_boundary(const pvg_dataset *ds, const pvg_eval_options *o)
{
    int64_t cut = o->cutoff, lo = cut;
    if (o->validation) {
        int64_t maxts = cut;
        for (size_t e = 0; e < ds->n_ev; e++)
            if (ds->ev_ts[e] > maxts) maxts = ds->ev_ts[e];
        lo = cut - (maxts - cut);
        if (maxts == cut) lo = cut - 1;
    }
    return lo;
}

pvg_status pvg_eval_recency_apply(const pvg_dataset *ds, const pvg_eval_options *o,
                                  const uint8_t *role, pvg_train_params *tp, pvg_error *err)
{
    if (!(tp->recency_halflife_days > 0 || (tp->recent_pop_days > 0 && tp->recent_pop_beta > 0)))
        return PVG_OK;
    int given = tp->recency_now != 0;
    if (o->protocol == PVG_EVAL_TEMPORAL) {
        /* the terms date a cell by its latest purchase before the present,
         * over every event of the dataset: a present after the boundary
         * would date training cells by held-out re-buys */
        int64_t b = temporal_boundary(ds, o);
        if (!tp->recency_now) {
            tp->recency_now = b;
        } else if (tp->recency_now > b) {
            char a[32], c[32];
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "recency: the present %s is after the temporal split's "
                                 "training boundary %s (%s): held-out purchases would date "
                                 "training cells; give one at or before it",
                                 pvg_utc_text(tp->recency_now, a), pvg_utc_text(b, c),
                                 o->validation ? "the validation window's start" : "the cut-off");
        }
    } else if (!tp->recency_now) {
        if (tp->recency_where_possible) {
            pvg_model_recency_clear(tp);
            return PVG_OK;
        }
        int64_t mx = INT64_MIN;
        for (size_t e = 0; e < ds->n_ev; e++)
            if (role[e] == PVG_SPLIT_TRAIN && ds->ev_ts[e] > mx) mx = ds->ev_ts[e];
        /* saturated; out of a present's range, refused by the trainer */
        tp->recency_now = mx == INT64_MIN ? 0 : mx == INT64_MAX ? INT64_MAX : mx + 1;
    }
    /* as `train` checks a model without DP given a present: one whose
     * recent window holds no training event (before the data, or long
     * after it, where the half-life would also weigh every purchase near
     * 0) is refused; a DP training is never gated on the data */
    if (!given || tp->dp_epsilon > 0 || !(tp->recent_pop_beta > 0)) return PVG_OK;
    return pvg_recency_window_check_role(ds, role, tp->recency_now, tp->recent_pop_days, err);
}

pvg_status pvg_eval_split(const pvg_dataset *ds, const pvg_eval_options *o, uint8_t *role,
                          pvg_error *err)
{
    size_t n = ds->n_ev;
    if (o->protocol == PVG_EVAL_TEMPORAL) {
        int64_t cut = o->cutoff, lo = temporal_boundary(ds, o);
        size_t ntr = 0, nte = 0;
        for (size_t e = 0; e < n; e++) {
            int64_t t = ds->ev_ts[e];
            if (!o->validation)
                role[e] = t < cut ? PVG_SPLIT_TRAIN : PVG_SPLIT_TEST;
            else
                role[e] = t < lo ? PVG_SPLIT_TRAIN : t < cut ? PVG_SPLIT_TEST : PVG_SPLIT_NONE;
            ntr += role[e] == PVG_SPLIT_TRAIN;
            nte += role[e] == PVG_SPLIT_TEST;
        }
        if (!ntr || !nte)
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "temporal split: %zu events before and %zu after the cut-off; "
                                 "both must be non-empty",
                                 ntr, nte);
        return PVG_OK;
    }
    pvg_csr F;
    if (pvg_csr_build(ds->n_users, ds->n_items, n, ds->ev_user, ds->ev_item, ds->ev_w, NULL, &F))
        return pvg_error_set(err, PVG_ERR_NOMEM, "eval: out of memory");
    uint8_t *cell = malloc(F.nnz ? F.nnz : 1);
    uint8_t *urole = calloc(ds->n_users ? ds->n_users : 1, 1);
    if (!cell || !urole) {
        free(cell);
        free(urole);
        pvg_csr_free(&F);
        return pvg_error_set(err, PVG_ERR_NOMEM, "eval: out of memory");
    }
    memset(cell, PVG_SPLIT_TRAIN, F.nnz);
    pvg_status st = PVG_OK;
    if (o->protocol == PVG_EVAL_RANDOM_SPLIT) {
        if (!(o->test_fraction > 0 && o->test_fraction < 1)) {
            st = pvg_error_set(err, PVG_ERR_INVALID, "test fraction must be in (0, 1), got %g",
                               o->test_fraction);
            goto done;
        }
        split_rows(&F, NULL, 0, o->test_fraction, o->seed, cell, PVG_SPLIT_TRAIN, PVG_SPLIT_TEST);
        if (o->validation) {
            /* discard the test cells, split the training cells again */
            for (size_t j = 0; j < F.nnz; j++)
                if (cell[j] == PVG_SPLIT_TEST) cell[j] = PVG_SPLIT_NONE;
            /* rows now mix NONE and TRAIN: split the TRAIN cells of each row */
            size_t cap = 0;
            uint64_t *idx = NULL;
            for (size_t u = 0; u < F.n_rows; u++) {
                uint64_t m = 0;
                for (uint64_t j = F.indptr[u]; j < F.indptr[u + 1]; j++) {
                    if (cell[j] != PVG_SPLIT_TRAIN) continue;
                    if (m >= cap) {
                        size_t nc = cap ? cap * 2 : 64;
                        uint64_t *ni = realloc(idx, nc * sizeof *ni);
                        if (!ni) break;
                        idx = ni;
                        cap = nc;
                    }
                    idx[m++] = j;
                }
                if (m < 2) continue;
                uint64_t s2 = (o->seed ^ 0xabcdef12345ULL) ^ (0x5851f42d4c957f2dULL * (u + 1));
                for (uint64_t j = m - 1; j > 0; j--) {
                    uint64_t r = below(&s2, j + 1), t = idx[j];
                    idx[j] = idx[r];
                    idx[r] = t;
                }
                uint64_t nh = (uint64_t)floor(o->test_fraction * (double)m + 0.5);
                if (nh < 1) nh = 1;
                if (nh > m - 1) nh = m - 1;
                for (uint64_t j = 0; j < nh; j++)
                    cell[idx[j]] = PVG_SPLIT_TEST;
            }
            free(idx);
        }
    } else if (o->protocol == PVG_EVAL_HOLDOUT_USERS) {
        long N = o->heldout_users;
        size_t nc = 0;
        uint32_t *cand = malloc((ds->n_users ? ds->n_users : 1) * sizeof *cand);
        if (!cand) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "eval: out of memory");
            goto done;
        }
        for (size_t u = 0; u < F.n_rows; u++)
            if (F.indptr[u + 1] - F.indptr[u] >= 2) cand[nc++] = (uint32_t)u;
        if (N < 1 || (size_t)(2 * N) >= nc) {
            free(cand);
            st = pvg_error_set(err, PVG_ERR_INVALID,
                               "holdout-users: %ld validation + %ld test users requested, only "
                               "%zu users have 2 or more items (and some must stay for training)",
                               N, N, nc);
            goto done;
        }
        uint64_t s = o->seed;
        for (size_t j = 0; j < (size_t)(2 * N); j++) {
            size_t r = j + below(&s, nc - j);
            uint32_t t = cand[j];
            cand[j] = cand[r];
            cand[r] = t;
        }
        /* urole: 1 validation user, 2 test user */
        for (long j = 0; j < 2 * N; j++)
            urole[cand[j]] = j < N ? 1 : 2;
        free(cand);
        uint8_t eval_users = o->validation ? 1 : 2;
        for (size_t u = 0; u < F.n_rows; u++)
            if (urole[u])
                for (uint64_t j = F.indptr[u]; j < F.indptr[u + 1]; j++)
                    cell[j] = urole[u] == eval_users ? PVG_SPLIT_FOLDIN : PVG_SPLIT_NONE;
        split_rows(&F, urole, eval_users, 0.2, o->seed ^ 0x77ULL, cell, PVG_SPLIT_FOLDIN,
                   PVG_SPLIT_TEST);
    } else {
        st = pvg_error_set(err, PVG_ERR_INVALID, "unknown protocol %d", (int)o->protocol);
        goto done;
    }
    for (size_t e = 0; e < n; e++) {
        int64_t c = find_cell(&F, ds->ev_user[e], ds->ev_item[e]);
        role[e] = c < 0 ? PVG_SPLIT_NONE : cell[c];
    }
done:
    free(cell);
    free(urole);
    pvg_csr_free(&F);
    return st;
}

void pvg_eval_user_metrics(const int64_t *ranked, size_t n_ranked, const uint32_t *targets,
                           size_t n_targets, int k, double *recall, double *ndcg, double *precision,
                           double *ap, double *hr)
{
    size_t kk = (size_t)k < n_ranked ? (size_t)k : n_ranked;
    double hits = 0, dcg = 0, sum_prec = 0;
    for (size_t r = 0; r < kk; r++) {
        /* targets sorted ascending */
        size_t lo = 0, hi = n_targets;
        uint32_t x = (uint32_t)ranked[r];
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (targets[mid] < x)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < n_targets && targets[lo] == x) {
            hits += 1;
            dcg += 1.0 / log2((double)r + 2.0);
            sum_prec += hits / (double)(r + 1);
        }
    }
    size_t denom = n_targets < (size_t)k ? n_targets : (size_t)k;
    double idcg = 0;
    for (size_t r = 0; r < denom; r++)
        idcg += 1.0 / log2((double)r + 2.0);
    *recall = denom ? hits / (double)denom : 0;
    *ndcg = idcg > 0 ? dcg / idcg : 0;
    *precision = hits / (double)k;
    *ap = denom ? sum_prec / (double)denom : 0;
    *hr = hits > 0 ? 1.0 : 0.0;
}

typedef struct eval_ctx {
    const pvg_model *m;
    const pvg_csr *Rt, *T, *Fi;
    const uint32_t *users;
    int protocol;
    const pvg_eval_options *o;
    int maxk;
    /* per thread */
    float **scores, **scratch, **sc;
    int64_t **idx;
    uint32_t **tbuf;
    double (*sum)[PVG_EVAL_MAX_K][5];
    uint8_t **covered; /* [n_ks][n_items] per thread */
    /* a model over another item set than the dataset's (a DP model's public
     * vocabulary): imap[i] = model index of dataset item i, or -1; scores
     * are computed in the model's space and mapped back (items outside it
     * are never recommended) */
    const int64_t *imap;
    float **mscores;
    uint32_t **mhist;
    float **mw;
} eval_ctx;

static void eval_range(void *vctx, int tid, size_t b, size_t e)
{
    eval_ctx *c = vctx;
    const pvg_model *m = c->m;
    size_t ni = c->imap ? c->Rt->n_cols : m->n_items;
    for (size_t a = b; a < e; a++) {
        uint32_t u = c->users[a];
        const pvg_csr *H = c->protocol == PVG_EVAL_HOLDOUT_USERS ? c->Fi : c->Rt;
        const uint32_t *hist = H->indices + H->indptr[u];
        const float *hw = H->data + H->indptr[u];
        size_t nh = (size_t)(H->indptr[u + 1] - H->indptr[u]);
        /* targets: test cells not in the training history */
        size_t nt = 0;
        for (uint64_t j = c->T->indptr[u]; j < c->T->indptr[u + 1]; j++) {
            uint32_t it = c->T->indices[j];
            if (find_cell(H, u, it) < 0) c->tbuf[tid][nt++] = it;
        }
        float *scores = c->scores[tid];
        const uint32_t *mh = hist;
        const float *mw = hw;
        size_t mn = nh;
        float *ms = scores;
        if (c->imap) {
            ms = c->mscores[tid];
            mn = 0;
            for (size_t j = 0; j < nh; j++)
                if (c->imap[hist[j]] >= 0) {
                    c->mhist[tid][mn] = (uint32_t)c->imap[hist[j]];
                    c->mw[tid][mn++] = hw[j];
                }
            mh = c->mhist[tid];
            mw = c->mw[tid];
        }
        if (m->type == PVG_MODEL_POPULARITY)
            memcpy(ms, m->popularity, m->n_items * sizeof *ms);
        else {
            const float *uf = (m->U && c->protocol != PVG_EVAL_HOLDOUT_USERS)
                                  ? m->U + (size_t)u * m->factors
                                  : NULL;
            pvg_model_score(m, uf, mh, mw, mn, ms, c->scratch[tid]);
        }
        if (c->imap)
            for (size_t i = 0; i < ni; i++)
                scores[i] = c->imap[i] >= 0 ? ms[c->imap[i]] : -INFINITY;
        for (size_t j = 0; j < nh; j++)
            scores[hist[j]] = -INFINITY;
        size_t got = pvg_topk(scores, ni, (size_t)c->maxk, c->idx[tid], c->sc[tid]);
        for (int q = 0; q < c->o->n_ks; q++) {
            double r, nd, p, ap, hr;
            pvg_eval_user_metrics(c->idx[tid], got, c->tbuf[tid], nt, c->o->ks[q], &r, &nd, &p, &ap,
                                  &hr);
            c->sum[tid][q][0] += r;
            c->sum[tid][q][1] += nd;
            c->sum[tid][q][2] += p;
            c->sum[tid][q][3] += ap;
            c->sum[tid][q][4] += hr;
            size_t kk = (size_t)c->o->ks[q] < got ? (size_t)c->o->ks[q] : got;
            for (size_t j = 0; j < kk; j++)
                c->covered[tid][(size_t)q * ni + c->idx[tid][j]] = 1;
        }
    }
}

pvg_status pvg_eval_run(const pvg_dataset *ds, const pvg_train_params *tp,
                        const pvg_eval_options *o, pvg_eval_result *res, pvg_error *err)
{
    memset(res, 0, sizeof *res);
    if (o->n_ks < 1 || o->n_ks > PVG_EVAL_MAX_K)
        return pvg_error_set(err, PVG_ERR_INVALID, "eval: 1..%d cut-offs needed", PVG_EVAL_MAX_K);
    int maxk = 0;
    for (int q = 0; q < o->n_ks; q++) {
        if (o->ks[q] < 1 || o->ks[q] > 100000)
            return pvg_error_set(err, PVG_ERR_INVALID, "eval: cut-off k=%d out of range 1..100000",
                                 o->ks[q]);
        if (o->ks[q] > maxk) maxk = o->ks[q];
    }
    size_t n = ds->n_ev, ni = ds->n_items, nu = ds->n_users;
    uint8_t *role = malloc(n ? n : 1);
    if (!role) return pvg_error_set(err, PVG_ERR_NOMEM, "eval: out of memory");
    pvg_status st = pvg_eval_split(ds, o, role, err);
    if (st != PVG_OK) {
        free(role);
        return st;
    }
    pvg_train_params tpr = *tp;
    if ((st = pvg_eval_recency_apply(ds, o, role, &tpr, err)) != PVG_OK) {
        free(role);
        return st;
    }
    tp = &tpr;
    uint8_t *keep = malloc(n ? n : 1);
    pvg_csr Rt = {0}, T = {0}, Fi = {0};
    int bad = !keep;
    if (!bad) {
        for (size_t e = 0; e < n; e++)
            keep[e] = role[e] == PVG_SPLIT_TRAIN;
        bad |= pvg_csr_build(nu, ni, n, ds->ev_user, ds->ev_item, ds->ev_w, keep, &Rt) != PVG_OK;
        for (size_t e = 0; e < n; e++)
            keep[e] = role[e] == PVG_SPLIT_TEST;
        bad |= pvg_csr_build(nu, ni, n, ds->ev_user, ds->ev_item, ds->ev_w, keep, &T) != PVG_OK;
        for (size_t e = 0; e < n; e++)
            keep[e] = role[e] == PVG_SPLIT_FOLDIN;
        bad |= pvg_csr_build(nu, ni, n, ds->ev_user, ds->ev_item, ds->ev_w, keep, &Fi) != PVG_OK;
    }
    free(keep);
    free(role);
    pvg_model *m = NULL;
    uint32_t *users = NULL;
    eval_ctx c;
    memset(&c, 0, sizeof c);
    int threads = o->threads < 1 ? 1 : o->threads;
    if (threads > 64) threads = 64;
    if (bad) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "eval: out of memory");
        goto done;
    }
    /* users to evaluate */
    users = malloc((nu ? nu : 1) * sizeof *users);
    if (!users) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "eval: out of memory");
        goto done;
    }
    size_t ne = 0;
    long min_items =
        o->protocol == PVG_EVAL_TEMPORAL ? (o->min_user_items > 0 ? o->min_user_items : 1) : 1;
    for (size_t u = 0; u < nu; u++) {
        const pvg_csr *H = o->protocol == PVG_EVAL_HOLDOUT_USERS ? &Fi : &Rt;
        uint64_t nh = H->indptr[u + 1] - H->indptr[u];
        if ((long)nh < min_items) continue;
        size_t nt = 0;
        for (uint64_t j = T.indptr[u]; j < T.indptr[u + 1]; j++)
            if (find_cell(H, (uint32_t)u, T.indices[j]) < 0) nt++;
        if (nt) users[ne++] = (uint32_t)u;
    }
    if (ne == 0) {
        st = pvg_error_set(err, PVG_ERR_INVALID,
                           "eval: no user has both training history and targets under this "
                           "protocol");
        goto done;
    }
    res->train_users = 0;
    for (size_t u = 0; u < nu; u++)
        res->train_users += Rt.indptr[u + 1] > Rt.indptr[u];
    res->train_items = ni;
    res->train_interactions = Rt.nnz;
    res->test_interactions = T.nnz;
    st = pvg_model_train_matrix(ds, &Rt, tp, &m, &res->train, err);
    if (st != PVG_OK) goto done;
    if ((st = pvg_model_dp_info_get(m, &res->dp, err)) != PVG_OK) goto done;
    if ((st = pvg_model_recency_get(m, &res->recency, err)) != PVG_OK) goto done;
    res->train_seconds = res->train.train_seconds;
    double t0 = pvg_now_seconds();
    c.m = m;
    c.Rt = &Rt;
    c.T = &T;
    c.Fi = &Fi;
    c.users = users;
    c.protocol = o->protocol;
    c.o = o;
    c.maxk = maxk;
    c.scores = calloc((size_t)threads, sizeof *c.scores);
    c.scratch = calloc((size_t)threads, sizeof *c.scratch);
    c.sc = calloc((size_t)threads, sizeof *c.sc);
    c.idx = calloc((size_t)threads, sizeof *c.idx);
    c.tbuf = calloc((size_t)threads, sizeof *c.tbuf);
    c.covered = calloc((size_t)threads, sizeof *c.covered);
    c.sum = calloc((size_t)threads, sizeof *c.sum);
    if (!c.scores || !c.scratch || !c.sc || !c.idx || !c.tbuf || !c.covered || !c.sum) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "eval: out of memory");
        goto done;
    }
    size_t F = m->factors ? m->factors : 1;
    int64_t *imap = NULL;
    if (m->n_items != ni || m->dp.epsilon > 0) {
        if (!(imap = malloc((ni ? ni : 1) * sizeof *imap)) ||
            !(c.mscores = calloc((size_t)threads, sizeof *c.mscores)) ||
            !(c.mhist = calloc((size_t)threads, sizeof *c.mhist)) ||
            !(c.mw = calloc((size_t)threads, sizeof *c.mw))) {
            free(imap);
            st = pvg_error_set(err, PVG_ERR_NOMEM, "eval: out of memory");
            goto done;
        }
        for (size_t i = 0; i < ni; i++)
            imap[i] = pvg_model_item_index(m, ds->item_ids[i]);
        c.imap = imap;
        for (int t = 0; t < threads; t++)
            if (!(c.mscores[t] = malloc((m->n_items ? m->n_items : 1) * sizeof(float))) ||
                !(c.mhist[t] = malloc((ni ? ni : 1) * sizeof(uint32_t))) ||
                !(c.mw[t] = malloc((ni ? ni : 1) * sizeof(float)))) {
                st = pvg_error_set(err, PVG_ERR_NOMEM, "eval: out of memory");
                goto done;
            }
    }
    for (int t = 0; t < threads; t++) {
        c.scores[t] = malloc((ni ? ni : 1) * sizeof(float));
        c.scratch[t] = malloc((F * F + 2 * F) * sizeof(float));
        c.sc[t] = malloc((size_t)maxk * sizeof(float));
        c.idx[t] = malloc((size_t)maxk * sizeof(int64_t));
        c.tbuf[t] = malloc((ni ? ni : 1) * sizeof(uint32_t));
        c.covered[t] = calloc((size_t)o->n_ks * (ni ? ni : 1), 1);
        if (!c.scores[t] || !c.scratch[t] || !c.sc[t] || !c.idx[t] || !c.tbuf[t] || !c.covered[t]) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "eval: out of memory");
            goto done;
        }
    }
    pvg_parallel_for(threads, ne, 32, eval_range, &c);
    res->n_ks = o->n_ks;
    res->users_evaluated = (long)ne;
    for (int q = 0; q < o->n_ks; q++) {
        double s[5] = {0};
        for (int t = 0; t < threads; t++)
            for (int z = 0; z < 5; z++)
                s[z] += c.sum[t][q][z];
        size_t cov = 0;
        for (size_t i = 0; i < ni; i++) {
            int any = 0;
            for (int t = 0; t < threads; t++)
                any |= c.covered[t][(size_t)q * ni + i];
            cov += any;
        }
        pvg_eval_at_k *a = &res->at[q];
        a->k = o->ks[q];
        a->recall = s[0] / (double)ne;
        a->ndcg = s[1] / (double)ne;
        a->precision = s[2] / (double)ne;
        a->map = s[3] / (double)ne;
        a->hr = s[4] / (double)ne;
        a->coverage = ni ? (double)cov / (double)ni : 0;
    }
    res->eval_seconds = pvg_now_seconds() - t0;
done:
    for (int t = 0; t < threads; t++) {
        if (c.scores) free(c.scores[t]);
        if (c.scratch) free(c.scratch[t]);
        if (c.sc) free(c.sc[t]);
        if (c.idx) free(c.idx[t]);
        if (c.tbuf) free(c.tbuf[t]);
        if (c.covered) free(c.covered[t]);
    }
    free(c.scores);
    free(c.scratch);
    free(c.sc);
    free(c.idx);
    free(c.tbuf);
    free(c.covered);
    free(c.sum);
    for (int t = 0; c.imap && t < threads; t++) {
        free(c.mscores[t]);
        free(c.mhist[t]);
        free(c.mw[t]);
    }
    free(c.mscores);
    free(c.mhist);
    free(c.mw);
    free((void *)c.imap);
    free(users);
    pvg_model_free(m);
    pvg_csr_free(&Rt);
    pvg_csr_free(&T);
    pvg_csr_free(&Fi);
    return st;
}
