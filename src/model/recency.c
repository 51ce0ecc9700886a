/*
 * recency.c - what EASE and DP-EASE may learn from when things were bought
 * (docs/models.md "Recency"): each history cell's latest purchase before
 * the training's present, the decay weight of its age, EASE on the
 * recency-weighted Gram, the count of recent buyers per item and the
 * blend of those counts into B.
 */
#include "model/model_internal.h"

#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t pvg_recency_now(const pvg_dataset *ds, const pvg_train_params *p)
{
    if (p->recency_now) return p->recency_now;
    int64_t mx = INT64_MIN;
    for (size_t e = 0; e < ds->n_ev; e++)
        if (ds->ev_ts[e] > mx) mx = ds->ev_ts[e];
    /* (saturated: an event at INT64_MAX; the trainer refuses a present
     * outside +-PVG_RECENCY_MAX_NOW) */
    return mx == INT64_MIN ? 0 : mx == INT64_MAX ? INT64_MAX : mx + 1;
}

static int64_t find_cell(const pvg_csr *R, uint32_t u, uint32_t i)
{
    uint64_t lo = R->indptr[u], hi = R->indptr[u + 1];
    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        if (R->indices[mid] < i)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < R->indptr[u + 1] && R->indices[lo] == i) ? (int64_t)lo : -1;
}

pvg_status pvg_recency_last(const pvg_dataset *ds, const pvg_csr *R, int64_t now, int64_t *last,
                            pvg_error *err)
{
    if (R->n_rows > ds->n_users || R->n_cols > ds->n_items)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "recency: the matrix (%zu x %zu) is larger than the dataset (%zu "
                             "shoppers x %zu items)",
                             R->n_rows, R->n_cols, ds->n_users, ds->n_items);
    for (size_t q = 0; q < R->nnz; q++)
        last[q] = INT64_MIN;
    for (size_t e = 0; e < ds->n_ev; e++) {
        int64_t ts = ds->ev_ts[e];
        if (ts >= now || ds->ev_user[e] >= R->n_rows || ds->ev_item[e] >= R->n_cols) continue;
        int64_t q = find_cell(R, ds->ev_user[e], ds->ev_item[e]);
        if (q >= 0 && ts > last[q]) last[q] = ts;
    }
    return PVG_OK;
}

const char *pvg_utc_text(int64_t t, char buf[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, 32, "%lld", (long long)t);
    return buf;
}

pvg_status pvg_recency_window_check_role(const pvg_dataset *ds, const uint8_t *role,
                                         int64_t present, double days, pvg_error *err)
{
    if (days == 0) return PVG_OK;
    /* a training's range (pvg_recency_check): present - days stays far
     * from int64's ends, and days * 86400 converts exactly */
    if (present < -PVG_RECENCY_MAX_NOW || present > PVG_RECENCY_MAX_NOW)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "recency: the present must be Unix seconds within +-%lld, got %lld",
                             (long long)PVG_RECENCY_MAX_NOW, (long long)present);
    if (!(days > 0 && days <= PVG_RECENCY_MAX_DAYS))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "recency: the recent buyers' window must be 0 (none) or in (0, %g] "
                             "days, got %g",
                             PVG_RECENCY_MAX_DAYS, days);
    int64_t from = present - (int64_t)(days * 86400.0), latest = INT64_MIN;
    for (size_t e = 0; e < ds->n_ev; e++) {
        int64_t ts = ds->ev_ts[e];
        if ((!role || role[e] == PVG_SPLIT_TRAIN) && ts < present && ts > latest) latest = ts;
    }
    if (latest >= from) return PVG_OK;
    char a[32], b[32] = "none";
    if (latest != INT64_MIN) pvg_utc_text(latest, b);
    return pvg_error_set(err, PVG_ERR_INVALID,
                         "recency: no %sevent in the %g days before the present %s (the latest "
                         "before it: %s): the recent buyers' term would be empty",
                         role ? "training " : "", days, pvg_utc_text(present, a), b);
}

pvg_status pvg_recency_window_check(const pvg_dataset *ds, int64_t present, double days,
                                    pvg_error *err)
{
    return pvg_recency_window_check_role(ds, NULL, present, days, err);
}

float pvg_recency_weight(int64_t now, int64_t ts, double halflife_days)
{
    if (ts == INT64_MIN) return 0.0f;
    if (!(halflife_days > 0) || ts >= now) return 1.0f;
    double age = (double)(now - ts) / 86400.0;
    return (float)exp2(-age / halflife_days);
}

/* Whether cell q counts as a purchase in the window [from, now): the one test
 * both the row's k and its weights use, so a unit row's norm is exactly 1. */
static inline int in_window(const pvg_csr *R, const int64_t *last, uint64_t q, int64_t from,
                            int64_t now)
{
    return R->data[q] > 0 && last[q] != INT64_MIN && last[q] >= from && last[q] < now;
}

pvg_status pvg_recent_buyers(const pvg_csr *R, const int64_t *last, int64_t now, double days,
                             int unit, double *cnt)
{
    int64_t from = now - (int64_t)(days * 86400.0);
    memset(cnt, 0, R->n_cols * sizeof *cnt);
    for (size_t u = 0; u < R->n_rows; u++) {
        size_t k = 0;
        for (uint64_t q = R->indptr[u]; q < R->indptr[u + 1]; q++)
            k += (size_t)in_window(R, last, q, from, now);
        if (!k) continue;
        double w = unit ? 1.0 / sqrt((double)k) : 1.0;
        for (uint64_t q = R->indptr[u]; q < R->indptr[u + 1]; q++)
            if (in_window(R, last, q, from, now)) cnt[R->indices[q]] += w;
    }
    return PVG_OK;
}

void pvg_recency_blend(float *B, size_t n, const float *r, double beta)
{
    double ss = 0, rmax = 0;
    size_t nz = 0;
    for (size_t q = 0; q < n * n; q++)
        if (B[q] != 0) {
            ss += (double)B[q] * B[q];
            nz++;
        }
    for (size_t j = 0; j < n; j++)
        if (r[j] > rmax) rmax = r[j];
    double rms = nz ? sqrt(ss / (double)nz) : 0;
    if (!(rmax > 0) || !(rms > 0) || !(beta > 0)) return;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (j != i) B[i * n + j] += (float)(beta * rms * (r[j] > 0 ? r[j] : 0) / rmax);
}

pvg_status pvg_ease_fit_weighted(const pvg_csr *R, const float *rw, size_t n, float lambda,
                                 int threads, float *B, pvg_error *err)
{
    if (!(lambda > 0))
        return pvg_error_set(err, PVG_ERR_INVALID, "ease: lambda must be > 0 (got %g)", lambda);
    double *G = calloc(n ? n * n : 1, sizeof *G);
    uint32_t *it = malloc((n ? n : 1) * sizeof *it);
    double *w = malloc((n ? n : 1) * sizeof *w);
    if (!G || !it || !w) {
        free(G), free(it), free(w);
        return pvg_error_set(err, PVG_ERR_NOMEM, "ease: out of memory (%zu items)", n);
    }
    for (size_t u = 0; u < R->n_rows; u++) {
        size_t k = 0;
        for (uint64_t q = R->indptr[u]; q < R->indptr[u + 1]; q++)
            if (R->data[q] > 0 && rw[q] > 0) {
                it[k] = R->indices[q]; /* ascending within a row */
                w[k++] = rw[q];
            }
        for (size_t a = 0; a < k; a++) {
            double *row = G + (size_t)it[a] * n;
            for (size_t b = a; b < k; b++)
                row[it[b]] += w[a] * w[b];
        }
    }
    free(it), free(w);
    for (size_t i = 0; i < n; i++) {
        B[i * n + i] = (float)(G[i * n + i] + lambda);
        for (size_t j = i + 1; j < n; j++)
            B[i * n + j] = B[j * n + i] = (float)G[i * n + j];
    }
    free(G);
    pvg_blas_threaded_begin(threads);
    lapack_int rc = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, B, (lapack_int)n);
    if (rc == 0) rc = LAPACKE_spotri(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, B, (lapack_int)n);
    pvg_blas_threaded_end();
    if (rc != 0)
        return pvg_error_set(err, PVG_ERR_INTERNAL,
                             "ease: Cholesky inversion of the weighted Gram failed (LAPACK info "
                             "%d); raise --lambda",
                             (int)rc);
    /* P's upper triangle -> full; B_ij = -P_ij / P_jj, diagonal 0 */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            B[j * n + i] = B[i * n + j];
    float *d = malloc((n ? n : 1) * sizeof *d);
    if (!d) return pvg_error_set(err, PVG_ERR_NOMEM, "ease: out of memory");
    for (size_t j = 0; j < n; j++)
        d[j] = B[j * n + j];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            B[i * n + j] = i == j ? 0.0f : -B[i * n + j] / d[j];
    free(d);
    return PVG_OK;
}

void pvg_recency_row_weights(const pvg_csr *R, const int64_t *last, int64_t now,
                             double halflife_days, int row_norm, float *rw)
{
    for (size_t u = 0; u < R->n_rows; u++) {
        uint64_t q0 = R->indptr[u], q1 = R->indptr[u + 1];
        if (!row_norm || !(halflife_days > 0)) {
            for (uint64_t q = q0; q < q1; q++)
                rw[q] = pvg_recency_weight(now, last[q], halflife_days);
            continue;
        }
        /* relative to the row's latest purchase, in double: the float
         * weights of a row whose purchases are all > 128 half-lives old
         * are below 2^-128, and sqrt(h / ss) from them overflows a float
         * (inf weights, a NaN Gram); relative, ss >= 1 and every weight is
         * at most sqrt(h) */
        int64_t newest = INT64_MIN;
        size_t h = 0;
        for (uint64_t q = q0; q < q1; q++)
            if (last[q] != INT64_MIN) {
                h++;
                if (last[q] > newest) newest = last[q];
            }
        double ss = 0;
        for (uint64_t q = q0; q < q1; q++)
            if (last[q] != INT64_MIN) {
                double w = exp2(-((double)(newest - last[q]) / 86400.0) / halflife_days);
                ss += w * w;
            }
        double f = h ? sqrt((double)h / ss) : 0;
        for (uint64_t q = q0; q < q1; q++)
            rw[q] =
                last[q] == INT64_MIN
                    ? 0.0f
                    : (float)(f * exp2(-((double)(newest - last[q]) / 86400.0) / halflife_days));
    }
}

pvg_status pvg_recency_check(const pvg_train_params *p, pvg_error *err)
{
    double hl = p->recency_halflife_days, days = p->recent_pop_days, beta = p->recent_pop_beta,
           share = p->recent_pop_share;
    int any = hl != 0 || days != 0 || beta != 0 || share != 0 || p->recency_row_norm != 0 ||
              p->recent_pop_unit != 0 || p->recency_now != 0;
    if (p->recency_where_possible != 0 && p->recency_where_possible != 1)
        return pvg_error_set(err, PVG_ERR_INVALID, "recency_where_possible must be 0 or 1, got %d",
                             p->recency_where_possible);
    if (!any) return PVG_OK;
    if (p->type != PVG_MODEL_EASE)
        return pvg_error_set(err, PVG_ERR_UNSUPPORTED,
                             "%s: recency terms (recency_*, recent_pop_*) are available to EASE "
                             "only",
                             pvg_model_type_name(p->type));
    if (hl != 0 && !(hl > 0 && hl <= PVG_RECENCY_MAX_DAYS))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "ease: recency_halflife_days must be 0 (off) or in (0, %g] days, "
                             "got %g",
                             PVG_RECENCY_MAX_DAYS, hl);
    if (days != 0 && !(days > 0 && days <= PVG_RECENCY_MAX_DAYS))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "ease: recent_pop_days must be 0 (off) or in (0, %g] days, got %g",
                             PVG_RECENCY_MAX_DAYS, days);
    if (beta != 0 && !(beta > 0 && beta <= PVG_RECENCY_MAX_BETA))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "ease: recent_pop_beta must be 0 (off) or in (0, %g], got %g",
                             PVG_RECENCY_MAX_BETA, beta);
    if ((days > 0) != (beta > 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "ease: recent_pop_days (%g) and recent_pop_beta (%g) go together: "
                             "both > 0 for the recent buyers' blend, both 0 without it",
                             days, beta);
    if (share != 0 && !(share > 0 && share < 1))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "ease: recent_pop_share must be 0 (the default share) or in (0, "
                             "1), got %g",
                             share);
    if (share != 0 && !(days > 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "ease: recent_pop_share (%g) needs the recent buyers' blend "
                             "(recent_pop_days and recent_pop_beta > 0)",
                             share);
    if (p->recent_pop_unit != 0 && !(p->recent_pop_unit == 1 && days > 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "ease: recent_pop_unit must be 0 or 1, and 1 needs the recent "
                             "buyers' blend (got %d with recent_pop_days %g)",
                             p->recent_pop_unit, days);
    if (p->recency_row_norm != 0 && !(p->recency_row_norm == 1 && hl > 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "ease: recency_row_norm must be 0 or 1, and 1 needs "
                             "recency_halflife_days > 0 (got %d with a half-life of %g)",
                             p->recency_row_norm, hl);
    if (!(hl > 0) && !(days > 0))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "ease: recency_now (%lld) is set without a recency term "
                             "(recency_halflife_days or recent_pop_days)",
                             (long long)p->recency_now);
    if (p->recency_now < -PVG_RECENCY_MAX_NOW || p->recency_now > PVG_RECENCY_MAX_NOW)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "ease: recency_now must be Unix seconds within +-%lld, got %lld",
                             (long long)PVG_RECENCY_MAX_NOW, (long long)p->recency_now);
    return PVG_OK;
}
