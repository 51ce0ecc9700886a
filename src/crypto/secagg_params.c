/*
 * secagg_params.c - choosing the SecAgg+ neighbourhood degree k and the
 * threshold t from the number of clients, the dropout and corrupt fractions
 * and the security and correctness parameters (Bell et al., "Secure
 * Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS 2020),
 * for the graph this library uses: a Harary graph H(k, n) on a uniformly
 * random order of the ids (secagg_common.c). The derivation is in
 * docs/secagg.md ("Choosing k and t"); in short, with R = C + D of the n
 * clients removed (C corrupt, D dropped, chosen independently of the order):
 *
 *   - connectivity: the honest senders are disconnected only when two
 *     disjoint runs of k/2 consecutive places on the ring are all removed,
 *     so P <= n^2/2 * prod_{i<k} (R - i)/(n - i);
 *   - corrupt holders: an honest client's neighbours are k of the other
 *     n - 1 clients drawn without replacement, so its corrupt neighbours are
 *     Hypergeometric(n - 1, C, k), union-bounded over n clients;
 *   - correctness: its dropped neighbours are Hypergeometric(n - 1, D, k); a
 *     secret can be rebuilt when k - dropped >= t (not counting the owner's
 *     own share), union-bounded over n clients.
 */
#include "crypto/secagg_internal.h"

#include <math.h>
#include <stdlib.h>

static double lfact(double x)
{
    return lgamma(x + 1.0);
}

/* log2 (2^a + 2^b) */
static double log2_add(double a, double b)
{
    if (a == -HUGE_VAL) return b;
    if (b == -HUGE_VAL) return a;
    double hi = a > b ? a : b, lo = a > b ? b : a;
    return hi + log2(1.0 + exp2(lo - hi));
}

/* tail[x] = log2 P[X >= x] for x = 0..k+1, X ~ Hypergeometric(N, K, k):
 * k draws without replacement from N items of which K are marked. */
static void hyp_log2_tails(uint32_t N, uint32_t K, uint32_t k, double *tail)
{
    double lden = lfact(N) - lfact(k) - lfact((double)N - k);
    uint32_t lo = k + K > N ? k + K - N : 0, hi = k < K ? k : K;
    tail[k + 1] = -HUGE_VAL;
    for (long x = (long)k; x >= 0; x--) {
        double t = tail[x + 1];
        if ((uint32_t)x >= lo && (uint32_t)x <= hi) {
            double lp = lfact(K) - lfact(x) - lfact((double)K - x) + lfact((double)N - K) -
                        lfact((double)k - x) - lfact((double)N - K - k + x) - lden;
            t = log2_add(t, lp / log(2.0));
        }
        tail[x] = x <= (long)lo ? 0.0 : (t > 0.0 ? 0.0 : t);
    }
}

/* log2 bound on the honest senders' graph being disconnected (sparse k) */
static double log2_disconnect(uint32_t n, uint32_t k, uint32_t R)
{
    if (R < k) return -HUGE_VAL;
    double l = 2.0 * log2((double)n) - 1.0;
    for (uint32_t i = 0; i < k; i++)
        l += log2((double)(R - i) / (double)(n - i));
    return l > 0.0 ? 0.0 : l;
}

pvg_status pvg_secagg_plan_params(const pvg_secagg_plan_options *o, pvg_secagg_plan *out,
                                  pvg_error *err)
{
    if (!o || !out) return pvg_error_set(err, PVG_ERR_INVALID, "secagg plan: missing argument");
    memset(out, 0, sizeof *out);
    if (o->n < 2 || o->n > PVG_SECAGG_MAX_CLIENTS)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "n", 0, 0, -1,
                                "clients: expected 2..%d, got %u", PVG_SECAGG_MAX_CLIENTS, o->n);
    if (!(o->dropout >= 0.0 && o->dropout < 1.0))
        return pvg_error_set_at(err, PVG_ERR_INVALID, "dropout", 0, 0, -1,
                                "dropout fraction: expected [0, 1), got %g", o->dropout);
    if (!(o->corrupt >= 0.0 && o->corrupt < 1.0))
        return pvg_error_set_at(err, PVG_ERR_INVALID, "corrupt", 0, 0, -1,
                                "corrupt fraction: expected [0, 1), got %g", o->corrupt);
    unsigned sigma = o->sigma ? o->sigma : 40, eta = o->eta ? o->eta : 20;
    if (sigma > 128)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "sigma", 0, 0, -1,
                                "security bits: expected 1..128, got %u", o->sigma);
    if (eta > 64)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "eta", 0, 0, -1,
                                "correctness bits: expected 1..64, got %u", o->eta);
    uint32_t n = o->n;
    /* the counts, rounded up (a small epsilon keeps 0.3 * 1000 at 300) */
    uint32_t D = (uint32_t)ceil(o->dropout * n - 1e-9), C = (uint32_t)ceil(o->corrupt * n - 1e-9);
    if ((uint64_t)D + C >= n)
        return pvg_error_set_at(err, PVG_ERR_INVALID, "dropout", 0, 0, -1,
                                "%u dropped and %u corrupt clients leave no honest survivor of %u",
                                D, C, n);
    double ln = log2((double)n), sec = -(double)sigma - 1.0, cor = -(double)eta;
    double *tc = malloc(sizeof(double) * ((size_t)n + 1));
    double *td = malloc(sizeof(double) * ((size_t)n + 1));
    if (!tc || !td) {
        free(tc);
        free(td);
        return pvg_error_set(err, PVG_ERR_NOMEM, "secagg plan: out of memory");
    }
    int found = 0;
    /* the even sparse degrees, then the complete graph k = n - 1 */
    for (uint32_t k = 2;; k += 2) {
        int complete = k >= n - 1;
        if (complete) k = n - 1;
        hyp_log2_tails(n - 1, C, k, tc);
        hyp_log2_tails(n - 1, D, k, td);
        uint32_t cmax = 0; /* corrupt neighbours reach cmax + 1 with prob <= 2^sec */
        while (cmax < k && ln + tc[cmax + 1] > sec)
            cmax++;
        uint32_t t = (k + 1) / 2 + 1;
        uint32_t need = o->active ? (k + 1 + cmax) / 2 + 1 : cmax + 1;
        if (need > t) t = need;
        double disc = complete ? -HUGE_VAL : log2_disconnect(n, k, C + D);
        if (t <= k + 1 && t >= 2) {
            /* corrupt holders that expose u (1 <= lim <= k + 1), and dropped
             * neighbours that leave fewer than t live ones (0 <= k - t + 1 < k) */
            uint32_t lim = o->active ? 2 * t - k - 1 : t;
            double pc = fmin(0.0, ln + tc[lim]), pa = fmin(0.0, ln + td[k - t + 1]);
            if (disc <= sec && pc <= sec && pa <= cor) {
                *out = (pvg_secagg_plan){k, t, 1, cmax, disc, pc, pa};
                found = 1;
                break;
            }
        }
        if (complete) break;
    }
    if (!found) {
        /* best effort: the complete graph with a majority threshold */
        uint32_t k = n - 1, t = n / 2 + 1;
        hyp_log2_tails(n - 1, C, k, tc);
        hyp_log2_tails(n - 1, D, k, td);
        uint32_t lim = o->active ? 2 * t - k - 1 : t;
        double pc = fmin(0.0, ln + tc[lim]), pa = fmin(0.0, ln + td[k - t + 1]);
        *out = (pvg_secagg_plan){k, t, 0, C, -HUGE_VAL, pc, pa};
    }
    free(tc);
    free(td);
    return PVG_OK;
}
