/*
 * paillier_spend.c - encrypted spend totals from the store: each user's
 * subtotal per group is encrypted under the analyst's Paillier key (as the
 * user's client would), the platform multiplies ciphertexts per group, and
 * with DP adds encrypted discrete-Laplace noise and charges the budget
 * ledger before anything leaves. Only the private-key holder learns totals.
 *
 * Amounts are integer cents (exponent 0): sums are exact, and DP noise is an
 * integer on the same grid, so no floating-point residue of individual
 * amounts survives in a decrypted total.
 */
#include "crypto/paillier_internal.h"

#include <privguide/dp.h>
#include <privguide/ledger.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sp_item {
    int64_t id;
    int group; /* -2: empty slot */
} sp_item;

typedef struct sp_ctx {
    pvg_store *s;
    const pvg_spend_options *o;
    const pvg_paillier_pub *pub;
    pvg_paillier_enc *enc;
    pvg_spend_group *groups;
    size_t ng, gcap;
    int closed_domain; /* dp + category/none: no new groups from the data */
    sp_item *items;    /* item row id -> group, open addressing */
    size_t icap;
    int *ug; /* per user: groups touched and subtotals */
    int64_t *ucents;
    size_t un, ucap;
    int64_t clamp_cents;
    long max_groups;
    pvg_paillier_ct *tmp;
    int *cg; /* contributions: group and clamped cents, in read order */
    int64_t *cv;
    size_t cn, ccap;
    long long users, events;
    pvg_status st;
    pvg_error *err;
} sp_ctx;

static int group_index(sp_ctx *x, const char *name)
{
    for (size_t i = 0; i < x->ng; i++)
        if (strcmp(x->groups[i].name, name) == 0) return (int)i;
    if (x->closed_domain) return -3; /* not in the public domain: dropped */
    if (x->ng == x->gcap) {
        size_t nc = x->gcap ? x->gcap * 2 : 32;
        pvg_spend_group *g = realloc(x->groups, nc * sizeof *g);
        if (!g) return -1;
        x->groups = g;
        x->gcap = nc;
    }
    pvg_spend_group *g = &x->groups[x->ng];
    g->name = strdup(name);
    g->users = 0;
    g->total = x->pub ? pvg_paillier_ct_new(x->pub) : NULL; /* no key: in the clear */
    if (!g->name || (x->pub && !g->total)) {
        free(g->name);
        pvg_paillier_ct_free(g->total);
        return -1;
    }
    return (int)x->ng++;
}

static int item_group(sp_ctx *x, int64_t item_id)
{
    if (x->icap == 0) {
        x->icap = 1 << 16;
        x->items = malloc(x->icap * sizeof *x->items);
        if (!x->items) return -1;
        for (size_t i = 0; i < x->icap; i++)
            x->items[i].group = -2;
    }
    size_t mask = x->icap - 1;
    size_t h = (size_t)(((uint64_t)item_id * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    size_t probes = 0;
    while (x->items[h].group != -2 && x->items[h].id != item_id && probes < x->icap) {
        h = (h + 1) & mask;
        probes++;
    }
    if (x->items[h].group != -2 && x->items[h].id == item_id) return x->items[h].group;
    pvg_item *it = NULL;
    pvg_error e;
    const char *cat = "(uncategorised)";
    if (item_id > 0 && pvg_store_item_get_by_id(x->s, item_id, &it, &e) == PVG_OK && it &&
        it->category && *it->category)
        cat = it->category;
    int g = group_index(x, cat);
    pvg_item_free(it);
    if (g >= -3 && g != -1 && probes < x->icap / 2) {
        x->items[h].id = item_id;
        x->items[h].group = g;
    }
    return g;
}

static int sp_user(void *ctx, const pvg_user_view *user, const pvg_event *ev, size_t n)
{
    sp_ctx *x = ctx;
    x->un = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(ev[i].fields & PVG_FIELD_AMOUNT)) continue;
        if (ev[i].type != PVG_EVENT_PURCHASE && ev[i].type != PVG_EVENT_RETURN) continue;
        if (!isfinite(ev[i].amount) || fabs(ev[i].amount) > 1e13) continue;
        int g;
        if (x->o->group_by == PVG_SPEND_BY_COUNTRY)
            g = group_index(x, (ev[i].fields & PVG_FIELD_COUNTRY) && ev[i].country && *ev[i].country
                                   ? ev[i].country
                                   : "(unknown)");
        else if (x->o->group_by == PVG_SPEND_BY_CATEGORY)
            g = item_group(x, ev[i].item_id);
        else
            g = group_index(x, "all");
        if (g == -3) continue;
        if (g < 0) {
            x->st = pvg_error_set(x->err, PVG_ERR_NOMEM, "out of memory");
            return 1;
        }
        int64_t cents = (int64_t)llround(ev[i].amount * 100.0);
        size_t k;
        for (k = 0; k < x->un; k++)
            if (x->ug[k] == g) break;
        if (k == x->un) {
            if (x->un == x->ucap) {
                size_t nc = x->ucap ? x->ucap * 2 : 16;
                int *a = realloc(x->ug, nc * sizeof *a);
                if (a) x->ug = a;
                int64_t *b = realloc(x->ucents, nc * sizeof *b);
                if (b) x->ucents = b;
                if (!a || !b) {
                    x->st = pvg_error_set(x->err, PVG_ERR_NOMEM, "out of memory");
                    return 1;
                }
                x->ucap = nc;
            }
            x->ug[k] = g;
            x->ucents[k] = 0;
            x->un++;
        }
        x->ucents[k] += cents;
        x->events++;
    }
    if (x->un) x->users++;
    /* The client side: each (user, group) subtotal is encrypted under the
     * analyst's key. With DP the contribution is bounded first: the first
     * max_groups groups in time order, each clamped to [-clamp, clamp]. */
    size_t limit = x->o->dp && (size_t)x->max_groups < x->un ? (size_t)x->max_groups : x->un;
    for (size_t k = 0; k < limit; k++) {
        int64_t v = x->ucents[k];
        if (x->o->dp) {
            if (v > x->clamp_cents) v = x->clamp_cents;
            if (v < -x->clamp_cents) v = -x->clamp_cents;
        }
        if (x->cn == x->ccap) {
            size_t nc = x->ccap ? x->ccap * 2 : 4096;
            int *a = realloc(x->cg, nc * sizeof *a);
            if (a) x->cg = a;
            int64_t *b = realloc(x->cv, nc * sizeof *b);
            if (b) x->cv = b;
            if (!a || !b) {
                x->st = pvg_error_set(x->err, PVG_ERR_NOMEM, "out of memory");
                return 1;
            }
            x->ccap = nc;
        }
        x->cg[x->cn] = x->ug[k];
        x->cv[x->cn] = v;
        x->cn++;
        x->groups[x->ug[k]].users++;
    }
    return 0;
}

/* ---- the clients' encryptions, spread over threads ---- */

typedef struct sp_worker {
    sp_ctx *x;
    unsigned idx, nthreads;
    pvg_paillier_enc *enc; /* own DJN encryptor (own generator) */
    pvg_he_acc **partial;  /* per group: running products (paillier_mont.c) */
    pvg_paillier_ct *tmp;
    pvg_status st;
    pvg_error err;
    pthread_t tid;
} sp_worker;

static void *sp_encrypt_worker(void *arg)
{
    sp_worker *w = arg;
    sp_ctx *x = w->x;
    for (size_t i = w->idx; i < x->cn && w->st == PVG_OK; i += w->nthreads) {
        w->st = pvg_paillier_encrypt_int64(w->enc, x->cv[i], w->tmp, &w->err);
        if (w->st == PVG_OK) pvg_he_acc_mul(w->partial[x->cg[i]], w->tmp->c); /* exponent 0 */
    }
    return NULL;
}

/* Encrypts every contribution (each with a fresh obfuscator, as its client
 * would) and multiplies them into the group totals, with `threads` workers
 * each summing its share into partial totals. */
static pvg_status sp_encrypt_all(sp_ctx *x, unsigned threads, pvg_rng *rng, pvg_error *err)
{
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if ((size_t)threads > x->cn / 64 + 1) threads = (unsigned)(x->cn / 64 + 1);
    sp_worker *w = calloc(threads, sizeof *w);
    if (!w) return pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    pvg_status st = PVG_OK;
    unsigned started = 0, made = 0;
    for (unsigned t = 0; t < threads && st == PVG_OK; t++, made++) {
        w[t].x = x;
        w[t].idx = t;
        w[t].nthreads = threads;
        w[t].st = PVG_OK;
        pvg_paillier_enc_options eo = {.mode = PVG_PAILLIER_OBF_DJN,
                                       .rng = rng,
                                       .allow_insecure_rng = x->o->allow_insecure_rng};
        st = pvg_paillier_enc_new(x->pub, &eo, &w[t].enc, err);
        w[t].tmp = pvg_paillier_ct_new(x->pub);
        w[t].partial = calloc(x->ng ? x->ng : 1, sizeof *w[t].partial);
        if (st == PVG_OK && (!w[t].tmp || !w[t].partial))
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        for (size_t g = 0; st == PVG_OK && g < x->ng; g++)
            if (!(w[t].partial[g] = pvg_he_acc_new(x->pub)))
                st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
    }
    if (st == PVG_OK) {
        for (unsigned t = 1; t < threads; t++) {
            if (pthread_create(&w[t].tid, NULL, sp_encrypt_worker, &w[t]) != 0) {
                /* run the share of a thread that could not start here */
                sp_encrypt_worker(&w[t]);
                w[t].nthreads = 0; /* not joined */
            } else {
                started++;
            }
        }
        sp_encrypt_worker(&w[0]);
        for (unsigned t = 1; t < threads; t++)
            if (w[t].nthreads) pthread_join(w[t].tid, NULL);
        for (unsigned t = 0; t < threads && st == PVG_OK; t++) {
            if (w[t].st != PVG_OK) {
                if (err) *err = w[t].err;
                st = w[t].st;
                break;
            }
            for (size_t g = 0; g < x->ng && st == PVG_OK; g++) {
                pvg_he_acc_get(w[t].partial[g], w[t].tmp->c);
                w[t].tmp->exponent = 0;
                st = pvg_paillier_add(x->groups[g].total, x->groups[g].total, w[t].tmp, err);
            }
        }
    }
    (void)started;
    for (unsigned t = 0; t < made; t++) {
        if (w[t].partial)
            for (size_t g = 0; g < x->ng; g++)
                pvg_he_acc_free(w[t].partial[g]);
        free(w[t].partial);
        pvg_paillier_ct_free(w[t].tmp);
        pvg_paillier_enc_free(w[t].enc);
    }
    free(w);
    return st;
}

static int sp_catalog_item(void *ctx, const pvg_item *it)
{
    sp_ctx *x = ctx;
    return group_index(x, it->category && *it->category ? it->category : "(uncategorised)") == -1;
}

static int cmp_group(const void *a, const void *b)
{
    return strcmp(((const pvg_spend_group *)a)->name, ((const pvg_spend_group *)b)->name);
}

void pvg_spend_result_free(pvg_spend_result *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->groups[i].name);
        pvg_paillier_ct_free(r->groups[i].total);
    }
    free(r->groups);
    free(r);
}

/* The DP options and the contribution bounds they set. */
static pvg_status sp_dp_setup(sp_ctx *x, const pvg_spend_options *opts, pvg_error *err)
{
    x->max_groups = opts->max_groups > 0 ? opts->max_groups : 1;
    if (!opts->dp) return PVG_OK;
    if (!(opts->epsilon > 0) || !isfinite(opts->epsilon))
        return pvg_error_set(err, PVG_ERR_INVALID, "epsilon must be a positive number");
    if (!(opts->clamp > 0) || !(opts->clamp < 1e12))
        return pvg_error_set(err, PVG_ERR_INVALID, "clamp must be in (0, 1e12)");
    if (opts->group_by == PVG_SPEND_BY_COUNTRY && !(opts->delta > 0 && opts->delta < 1))
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "grouping by country with DP needs 0 < delta < 1: the set of "
                             "countries comes from the data and is selected privately");
    pvg_status st =
        pvg_rng_require_secure(opts->rng, opts->allow_insecure_rng, "a DP release", err);
    if (st != PVG_OK) return st;
    x->clamp_cents = (int64_t)llround(opts->clamp * 100.0);
    if (x->clamp_cents < 1) x->clamp_cents = 1;
    return PVG_OK;
}

/* The DP step on the bounded contributions, in the clear: private selection
 * of the groups (countries: Laplace thresholding at epsilon/2) into keep[],
 * and the noise z[i] of each kept group's total, discrete Laplace with
 * sensitivity clamp * max_groups (a user moves at most max_groups totals,
 * each by at most clamp). The encrypted path encrypts z[i] into the total;
 * the plaintext path adds it. */
static pvg_status sp_dp_noise(const sp_ctx *x, pvg_rng *rng, char *keep, int64_t *z,
                              double *noise_scale, pvg_error *err)
{
    const pvg_spend_options *opts = x->o;
    double eps_sum = opts->epsilon;
    pvg_status st;
    if (opts->group_by == PVG_SPEND_BY_COUNTRY) {
        double eps_sel = opts->epsilon / 2;
        eps_sum = opts->epsilon / 2;
        pvg_dp_partition_rule rule;
        st = pvg_dp_partition_rule_make(eps_sel, opts->delta, x->max_groups, &rule, err);
        if (st != PVG_OK) return st;
        for (size_t i = 0; i < x->ng; i++)
            keep[i] = (char)pvg_dp_partition_keep(rng, &rule, x->groups[i].users, NULL);
    }
    int64_t sens = x->clamp_cents * (int64_t)x->max_groups;
    pvg_dp_noise_info info;
    memset(&info, 0, sizeof info);
    for (size_t i = 0; i < x->ng; i++) {
        z[i] = 0;
        if (!keep[i]) continue;
        st = pvg_dp_laplace_int(rng, 0, sens, eps_sum, opts->allow_insecure_rng, &z[i], &info, err);
        if (st != PVG_OK) return st;
    }
    *noise_scale = info.scale;
    return PVG_OK;
}

pvg_status pvg_paillier_spend_total(pvg_store *s, const pvg_paillier_pub *pub,
                                    const pvg_spend_options *opts, pvg_spend_result **out,
                                    pvg_error *err)
{
    *out = NULL;
    pvg_spend_options def = {0};
    if (!opts) opts = &def;
    if (!s || !pub) return pvg_error_set(err, PVG_ERR_INVALID, "no store or no public key");
    if (opts->group_by != PVG_SPEND_BY_NONE && opts->group_by != PVG_SPEND_BY_COUNTRY &&
        opts->group_by != PVG_SPEND_BY_CATEGORY)
        return pvg_error_set(err, PVG_ERR_INVALID, "unknown grouping %d", (int)opts->group_by);
    sp_ctx x;
    memset(&x, 0, sizeof x);
    x.s = s;
    x.o = opts;
    x.pub = pub;
    x.err = err;
    pvg_status st = sp_dp_setup(&x, opts, err);
    if (st != PVG_OK) return st;
    pvg_paillier_enc_options eo = {.mode = PVG_PAILLIER_OBF_DJN,
                                   .rng = opts->rng,
                                   .allow_insecure_rng = opts->allow_insecure_rng};
    /* split first: the DP draws see the stream pvg_he_spend_total_plain sees */
    pvg_rng *rng = opts->rng ? pvg_rng_split(opts->rng) : pvg_rng_new_secure();
    st = pvg_paillier_enc_new(pub, &eo, &x.enc, err);
    if (st != PVG_OK) {
        pvg_rng_free(rng);
        return st;
    }
    x.tmp = pvg_paillier_ct_new(pub);
    char *keep = NULL;
    int64_t *z = NULL;
    pvg_spend_result *res = calloc(1, sizeof *res);
    if (!rng || !x.tmp || !res) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* With DP, categories (catalog data, not personal) and "all" are a public
     * domain fixed before reading any user. "(uncategorised)" is ALWAYS in
     * the category domain: ingest adds a category-less stub row for any
     * event item missing from the catalog, so whether some item lacks a
     * category depends on what shoppers bought; a domain that held the
     * group only then would reveal, by the group's presence, that such a
     * shopper exists. */
    if (opts->dp && opts->group_by == PVG_SPEND_BY_CATEGORY) {
        st = pvg_store_items_foreach(s, sp_catalog_item, &x, err);
        if (st != PVG_OK) goto done;
        if (group_index(&x, "(uncategorised)") < 0) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            goto done;
        }
        x.closed_domain = 1;
    }
    if (opts->dp && opts->group_by == PVG_SPEND_BY_NONE) {
        if (group_index(&x, "all") < 0) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            goto done;
        }
        x.closed_domain = 1;
    }
    x.st = PVG_OK;
    st = pvg_store_foreach_user(s, PVG_FOREACH_REQUIRE_ANALYTICS, sp_user, &x, err);
    if (x.st != PVG_OK) {
        st = x.st;
        goto done;
    }
    if (st != PVG_OK) goto done;
    keep = malloc(x.ng ? x.ng : 1);
    z = calloc(x.ng ? x.ng : 1, sizeof *z);
    if (!keep || !z) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto done;
    }
    memset(keep, 1, x.ng ? x.ng : 1);
    /* selection and noise are drawn first (in the clear, like
     * pvg_he_spend_total_plain), then encrypted into the totals */
    if (opts->dp && (st = sp_dp_noise(&x, rng, keep, z, &res->noise_scale, err)) != PVG_OK)
        goto done;
    st = sp_encrypt_all(&x, opts->threads ? opts->threads : 1, rng, err);
    if (st != PVG_OK) goto done;
    if (opts->dp) {
        for (size_t i = 0; i < x.ng; i++) {
            if (!keep[i]) continue;
            st = pvg_paillier_encrypt_int64(x.enc, z[i], x.tmp, err);
            if (st == PVG_OK)
                st = pvg_paillier_add(x.groups[i].total, x.groups[i].total, x.tmp, err);
            if (st != PVG_OK) goto done;
        }
        char what[320];
        snprintf(what, sizeof what,
                 "encrypted spend total by %s (clamp %.2f, at most %ld groups per user)%s%.64s%s",
                 opts->group_by == PVG_SPEND_BY_COUNTRY    ? "country"
                 : opts->group_by == PVG_SPEND_BY_CATEGORY ? "category"
                                                           : "none",
                 opts->clamp, x.max_groups, opts->dataset ? " [" : "",
                 opts->dataset ? opts->dataset : "", opts->dataset ? "]" : "");
        /* One budget per store: spend totals are the purpose "spend_totals"
         * whatever label the caller gives (kept in the description). */
        st = pvg_ledger_charge(s, "spend_totals", what, "discrete-laplace", opts->epsilon,
                               opts->group_by == PVG_SPEND_BY_COUNTRY ? opts->delta : 0, NULL, err);
        if (st != PVG_OK) goto done;
    }
    /* Re-randomise every total that leaves; move kept groups to the result. */
    res->groups = calloc(x.ng ? x.ng : 1, sizeof *res->groups);
    if (!res->groups) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < x.ng; i++) {
        if (!keep[i]) continue;
        st = pvg_paillier_rerandomize(x.enc, x.groups[i].total, err);
        if (st != PVG_OK) goto done;
        res->groups[res->n] = x.groups[i];
        if (opts->dp) res->groups[res->n].users = -1;
        res->n++;
        x.groups[i].name = NULL;
        x.groups[i].total = NULL;
    }
    qsort(res->groups, res->n, sizeof *res->groups, cmp_group);
    res->users = x.users;
    res->events = x.events;
done:
    for (size_t i = 0; i < x.ng; i++) {
        free(x.groups[i].name);
        pvg_paillier_ct_free(x.groups[i].total);
    }
    free(x.groups);
    free(x.items);
    free(x.ug);
    free(x.ucents);
    free(x.cg);
    free(x.cv);
    free(keep);
    free(z);
    pvg_paillier_ct_free(x.tmp);
    pvg_rng_free(rng);
    pvg_paillier_enc_free(x.enc);
    if (st != PVG_OK) {
        pvg_spend_result_free(res);
        return st;
    }
    *out = res;
    return PVG_OK;
}

/* ---- the same release in the clear (paillier_internal.h) ---- */

void pvg_he_spend_plain_free(pvg_he_spend_plain *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++)
        free(p->names[i]);
    free(p->names);
    free(p->cents);
    free(p);
}

typedef struct sp_plain_row {
    char *name;
    int64_t cents;
} sp_plain_row;

static int cmp_plain_row(const void *a, const void *b)
{
    return strcmp(((const sp_plain_row *)a)->name, ((const sp_plain_row *)b)->name);
}

pvg_status pvg_he_spend_total_plain(const pvg_he_spend_user *users, size_t n_users,
                                    const pvg_spend_options *opts, pvg_he_spend_plain **out,
                                    pvg_error *err)
{
    *out = NULL;
    if (!opts || !opts->dp)
        return pvg_error_set(err, PVG_ERR_INVALID, "the plaintext spend release needs dp = 1");
    if (opts->group_by != PVG_SPEND_BY_NONE && opts->group_by != PVG_SPEND_BY_COUNTRY)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "the plaintext spend release groups by none or country, got %d",
                             (int)opts->group_by);
    sp_ctx x;
    memset(&x, 0, sizeof x);
    x.o = opts;
    x.err = err;
    pvg_status st = sp_dp_setup(&x, opts, err);
    if (st != PVG_OK) return st;
    /* the draws come from opts->rng itself (the encrypted path draws them
     * from its split of opts->rng: splitting costs guarded memory, too slow
     * for 10^5 releases) */
    pvg_rng *own = opts->rng ? NULL : pvg_rng_new_secure(), *rng = opts->rng ? opts->rng : own;
    char *keep = NULL;
    int64_t *z = NULL, *sum = NULL;
    sp_plain_row *rows = NULL;
    pvg_he_spend_plain *res = calloc(1, sizeof *res);
    if (!rng || !res) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (opts->group_by == PVG_SPEND_BY_NONE) {
        if (group_index(&x, "all") < 0) {
            st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
            goto done;
        }
        x.closed_domain = 1;
    }
    x.st = PVG_OK;
    for (size_t u = 0; u < n_users && x.st == PVG_OK; u++)
        sp_user(&x, NULL, users[u].events, users[u].n);
    if ((st = x.st) != PVG_OK) goto done;
    size_t ng = x.ng ? x.ng : 1;
    keep = malloc(ng);
    z = calloc(ng, sizeof *z);
    sum = calloc(ng, sizeof *sum);
    rows = calloc(ng, sizeof *rows);
    res->names = calloc(ng, sizeof *res->names);
    res->cents = calloc(ng, sizeof *res->cents);
    if (!keep || !z || !sum || !rows || !res->names || !res->cents) {
        st = pvg_error_set(err, PVG_ERR_NOMEM, "out of memory");
        goto done;
    }
    memset(keep, 1, ng);
    if ((st = sp_dp_noise(&x, rng, keep, z, &res->noise_scale, err)) != PVG_OK) goto done;
    /* what the encrypted path multiplies into each total: the clamped
     * contributions, then the noise */
    for (size_t i = 0; i < x.cn; i++)
        sum[x.cg[i]] += x.cv[i];
    size_t nr = 0;
    for (size_t i = 0; i < x.ng; i++) {
        if (!keep[i]) continue;
        rows[nr].name = x.groups[i].name;
        rows[nr].cents = sum[i] + z[i];
        x.groups[i].name = NULL;
        nr++;
    }
    qsort(rows, nr, sizeof *rows, cmp_plain_row);
    for (size_t i = 0; i < nr; i++) {
        res->names[i] = rows[i].name;
        res->cents[i] = rows[i].cents;
    }
    res->n = nr;
done:
    for (size_t i = 0; i < x.ng; i++)
        free(x.groups[i].name);
    free(x.groups);
    free(x.ug);
    free(x.ucents);
    free(x.cg);
    free(x.cv);
    free(keep);
    free(z);
    free(sum);
    free(rows);
    pvg_rng_free(own);
    if (st != PVG_OK) {
        pvg_he_spend_plain_free(res);
        return st;
    }
    *out = res;
    return PVG_OK;
}
