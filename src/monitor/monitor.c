/*
 * monitor.c - the rule engine of access monitoring (include/privguide/
 * monitor.h): per (rule, key) state with a sliding counter (8 slots over the
 * rule's window), a tumbling window whose closed counts feed the baselines
 * (log2 histograms over two generations of history_s seconds: the credential's
 * own and its class's), distinct sets for the rules that count distinct
 * shoppers or addresses, and the hours a key is usually used at. Every feed
 * touches O(1) states, each in O(1) amortised. docs/monitor.md says what
 * each rule counts and how its threshold is set.
 */
#include <privguide/monitor.h>

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOTS 8
#define HBUCKETS 64 /* quarter octaves: 1 .. 2^15.75 (larger counts share the last) */
#define MAX_STATES 100000
/* shopper tokens' states stop here: a shop's many shoppers cannot fill the
 * map and leave the API keys (and the global rules) unwatched */
#define MAX_TOKEN_STATES (MAX_STATES - MAX_STATES / 10)
#define DSET_MAX (1u << 18)

enum { CLASS_KEY = 0, CLASS_TOKEN = 1, CLASS_OTHER = 2, N_CLASSES = 3 };

typedef struct hist {
    int64_t gen;
    uint32_t b[HBUCKETS];
    uint32_t n;
} hist;

typedef struct dslot {
    uint64_t h; /* 0: empty */
    int64_t last;
} dslot;

typedef struct dset {
    dslot *t;
    size_t cap, n;
} dset;

typedef struct kstate {
    uint64_t h;
    int rule, cls;
    char cred[48];
    char sig[96]; /* dp_repeat: the query's signature */
    int64_t slot_epoch[SLOTS];
    double slot_val[SLOTS];
    int64_t win_epoch;
    double win_val;
    int win_alerted; /* the window's count passed the threshold (live) */
    double win_thr;  /* the threshold it passed */
    hist own[2];
    int64_t ev[PVG_MON_EVIDENCE_MAX];
    unsigned ev_n, ev_pos;
    dset set;
    int64_t cooldown_until;
    /* off_hours */
    uint32_t hour_days[24];
    int64_t last_hour_mark; /* ts / 3600 of the last hour recorded */
    int64_t last_day;
    uint32_t days;
    int64_t alerted_hour_mark;
    int64_t last_ts; /* the latest event time that touched it */
} kstate;

struct pvg_monitor {
    pvg_monitor_config cfg;
    int learning;
    kstate **map;
    size_t cap, n, n_tok; /* states in the map; of them, shopper tokens' */
    int64_t now;          /* the latest event time fed */
    int64_t next_sweep;   /* no eviction sweep before this time */
    hist pop[PVG_MON_N_RULES][N_CLASSES][2];
    pvg_monitor_alert *q;
    size_t q_head, q_n, q_cap;
    long long counts[PVG_MON_N_RULES];
    int64_t last_seq, last_release;
    int64_t dp_ev[PVG_MON_EVIDENCE_MAX]; /* seqs of recent DP releases' audit entries */
    unsigned dp_ev_n, dp_ev_pos;
};

static const char *RULE_NAMES[PVG_MON_N_RULES] = {
    "many_shoppers", "export_burst", "token_addresses", "dp_repeat",
    "auth_failures", "budget_drain", "off_hours"};

const char *pvg_monitor_rule_name(pvg_monitor_rule r)
{
    return (unsigned)r < PVG_MON_N_RULES ? RULE_NAMES[r] : "?";
}

const char *pvg_monitor_action_name(pvg_monitor_action a)
{
    switch (a) {
    case PVG_MON_ACT_RATE_LIMIT:
        return "rate_limited";
    case PVG_MON_ACT_SUSPEND:
        return "suspended";
    default:
        return "none";
    }
}

void pvg_monitor_config_init(pvg_monitor_config *c)
{
    memset(c, 0, sizeof *c);
    /* enabled, window_s, floor, factor, action, severity */
    c->rules[PVG_MON_MANY_SHOPPERS] =
        (pvg_monitor_rule_config){1, 600, 100, 3, PVG_MON_ACT_SUSPEND, "critical"};
    c->rules[PVG_MON_EXPORT_BURST] =
        (pvg_monitor_rule_config){1, 600, 20, 3, PVG_MON_ACT_SUSPEND, "critical"};
    c->rules[PVG_MON_TOKEN_ADDRESSES] =
        (pvg_monitor_rule_config){1, 3600, 5, 2, PVG_MON_ACT_SUSPEND, "critical"};
    c->rules[PVG_MON_DP_REPEAT] =
        (pvg_monitor_rule_config){1, 3600, 5, 2, PVG_MON_ACT_RATE_LIMIT, "warning"};
    c->rules[PVG_MON_AUTH_FAILURES] =
        (pvg_monitor_rule_config){1, 60, 30, 3, PVG_MON_ACT_NONE, "warning"};
    c->rules[PVG_MON_BUDGET_DRAIN] =
        (pvg_monitor_rule_config){1, 3600, 0.02, 3, PVG_MON_ACT_NONE, "critical"};
    c->rules[PVG_MON_OFF_HOURS] =
        (pvg_monitor_rule_config){1, 3600, 0, 0, PVG_MON_ACT_NONE, "warning"};
    c->history_s = 7 * 86400.0;
    c->min_windows = 5;
    c->off_hours_min_days = 3;
    c->budget_total = 0;
    c->throttle_rate = 1;
}

pvg_status pvg_monitor_new(const pvg_monitor_config *cfg, pvg_monitor **out, pvg_error *err)
{
    if (!out) return pvg_error_set(err, PVG_ERR_INVALID, "monitor: NULL argument");
    *out = NULL;
    pvg_monitor_config c;
    if (cfg)
        c = *cfg;
    else
        pvg_monitor_config_init(&c);
    for (int r = 0; r < PVG_MON_N_RULES; r++) {
        const pvg_monitor_rule_config *rc = &c.rules[r];
        if (!(rc->window_s > 0) || !(rc->factor >= 0) || !(rc->floor >= 0))
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "monitor: rule %s: want window_s > 0, floor >= 0, factor >= 0",
                                 RULE_NAMES[r]);
        if (!rc->severity) c.rules[r].severity = "warning";
    }
    if (!(c.history_s > 0) || c.min_windows < 1)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "monitor: want history_s > 0 and min_windows >= 1");
    pvg_monitor *m = calloc(1, sizeof *m);
    if (!m) return pvg_error_set(err, PVG_ERR_NOMEM, "monitor: out of memory");
    m->cfg = c;
    m->cap = 1024;
    m->map = calloc(m->cap, sizeof *m->map);
    if (!m->map) {
        free(m);
        return pvg_error_set(err, PVG_ERR_NOMEM, "monitor: out of memory");
    }
    *out = m;
    return PVG_OK;
}

void pvg_monitor_free(pvg_monitor *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->map[i]) {
            free(m->map[i]->set.t);
            free(m->map[i]);
        }
    free(m->map);
    free(m->q);
    free(m);
}

void pvg_monitor_set_learning(pvg_monitor *m, int on)
{
    m->learning = on != 0;
}

void pvg_monitor_set_budget_total(pvg_monitor *m, double total_epsilon)
{
    m->cfg.budget_total = total_epsilon > 0 ? total_epsilon : 0;
}

int64_t pvg_monitor_last_seq(const pvg_monitor *m)
{
    return m->last_seq;
}

int64_t pvg_monitor_last_release(const pvg_monitor *m)
{
    return m->last_release;
}

void pvg_monitor_counts(const pvg_monitor *m, long long counts[PVG_MON_N_RULES])
{
    memcpy(counts, m->counts, sizeof m->counts);
}

/* ---- small parts ------------------------------------------------------ */

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint64_t key_hash(int rule, const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(rule + 1);
    h = fnv(h, a);
    h = fnv(h * 31 + 7, b);
    return h ? h : 1;
}

/* Bucket 0 holds 0; bucket b >= 1 holds [2^((b-1)/4), 2^(b/4)) (values
 * below 1 go to bucket 1): a quantile read back as its bucket's upper edge
 * is at most 19% above the true value. */
static int hbucket(double v)
{
    if (!(v > 0)) return 0;
    int b = 1 + (int)floor(4 * log2(v));
    if (b < 1) b = 1;
    return b >= HBUCKETS ? HBUCKETS - 1 : b;
}

static double hedge(int b) /* upper edge of bucket b */
{
    return b == 0 ? 0 : exp2(b / 4.0);
}

static double rule_scale(int rule)
{
    return rule == PVG_MON_BUDGET_DRAIN ? 1000.0 : 1.0;
}

static void hist_add(hist h[2], int64_t gen, double v)
{
    hist *x = &h[gen & 1];
    if (x->gen != gen) {
        memset(x, 0, sizeof *x);
        x->gen = gen;
    }
    x->b[hbucket(v)]++;
    x->n++;
}

/* Sum of the two generations still within reach at `gen`. */
static void hist_view(const hist h[2], int64_t gen, uint32_t b[HBUCKETS], uint32_t *n)
{
    memset(b, 0, HBUCKETS * sizeof *b);
    *n = 0;
    for (int i = 0; i < 2; i++) {
        if (h[i].n == 0 || h[i].gen < gen - 1 || h[i].gen > gen) continue;
        for (int k = 0; k < HBUCKETS; k++)
            b[k] += h[i].b[k];
        *n += h[i].n;
    }
}

static double hist_quantile(const uint32_t b[HBUCKETS], uint32_t n, double q)
{
    if (!n) return 0;
    double want = q * n, cum = 0;
    for (int k = 0; k < HBUCKETS; k++) {
        cum += b[k];
        if (cum >= want) return hedge(k);
    }
    return hedge(HBUCKETS - 1);
}

static double hist_max(const uint32_t b[HBUCKETS])
{
    for (int k = HBUCKETS - 1; k >= 0; k--)
        if (b[k]) return hedge(k);
    return 0;
}

static int class_of(const char *actor)
{
    if (actor && strncmp(actor, "key:", 4) == 0) return CLASS_KEY;
    if (actor && strncmp(actor, "token:", 6) == 0) return CLASS_TOKEN;
    return CLASS_OTHER;
}

/* ---- the state map -------------------------------------------------------- */

static int map_grow(pvg_monitor *m)
{
    size_t cap = m->cap * 2;
    kstate **t = calloc(cap, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        kstate *s = m->map[i];
        if (!s) continue;
        size_t j = s->h & (cap - 1);
        while (t[j])
            j = (j + 1) & (cap - 1);
        t[j] = s;
    }
    free(m->map);
    m->map = t;
    m->cap = cap;
    return 0;
}

/* Drops the states nothing touched for two history periods: their own
 * histograms are out of reach (hist_view) and their windows closed, so
 * nothing is lost but off_hours' hour counts of a key idle that long. At
 * most one sweep per hundredth of a history period. */
static void evict_idle(pvg_monitor *m)
{
    if (m->now < m->next_sweep) return;
    m->next_sweep = m->now + (int64_t)(m->cfg.history_s / 100) + 1;
    int64_t before = m->now - (int64_t)(2 * m->cfg.history_s);
    kstate **t = calloc(m->cap, sizeof *t);
    if (!t) return;
    size_t n = 0, n_tok = 0;
    for (size_t i = 0; i < m->cap; i++) {
        kstate *x = m->map[i];
        if (!x) continue;
        if (x->last_ts < before) {
            free(x->set.t);
            free(x);
            continue;
        }
        size_t j = x->h & (m->cap - 1);
        while (t[j])
            j = (j + 1) & (m->cap - 1);
        t[j] = x;
        n++;
        if (x->cls == CLASS_TOKEN) n_tok++;
    }
    free(m->map);
    m->map = t;
    m->n = n;
    m->n_tok = n_tok;
}

/* The state of (rule, a|b); created when absent (NULL: out of memory or the
 * map is full even after dropping idle states). */
static kstate *state_of(pvg_monitor *m, int rule, const char *cred, const char *sig)
{
    uint64_t h = key_hash(rule, cred, sig);
    size_t i = h & (m->cap - 1);
    while (m->map[i]) {
        if (m->map[i]->h == h && m->map[i]->rule == rule) {
            if (m->now > m->map[i]->last_ts) m->map[i]->last_ts = m->now;
            return m->map[i];
        }
        i = (i + 1) & (m->cap - 1);
    }
    int cls = class_of(cred);
    if (m->n >= MAX_STATES || (cls == CLASS_TOKEN && m->n_tok >= MAX_TOKEN_STATES)) {
        evict_idle(m);
        if (m->n >= MAX_STATES || (cls == CLASS_TOKEN && m->n_tok >= MAX_TOKEN_STATES)) return NULL;
        i = h & (m->cap - 1);
        while (m->map[i])
            i = (i + 1) & (m->cap - 1);
    }
    if ((m->n + 1) * 2 > m->cap) {
        if (map_grow(m)) return NULL;
        i = h & (m->cap - 1);
        while (m->map[i])
            i = (i + 1) & (m->cap - 1);
    }
    kstate *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->h = h;
    s->rule = rule;
    s->cls = cls;
    snprintf(s->cred, sizeof s->cred, "%s", cred ? cred : "");
    snprintf(s->sig, sizeof s->sig, "%s", sig ? sig : "");
    s->win_epoch = INT64_MIN;
    s->alerted_hour_mark = -1;
    s->last_ts = m->now;
    s->last_hour_mark = -1;
    s->last_day = -1;
    m->map[i] = s;
    m->n++;
    if (cls == CLASS_TOKEN) m->n_tok++;
    return s;
}

/* ---- distinct sets ------------------------------------------------------- */

static dslot *dset_find(dslot *t, size_t cap, uint64_t h)
{
    size_t i = h & (cap - 1);
    while (t[i].h && t[i].h != h)
        i = (i + 1) & (cap - 1);
    return &t[i];
}

/* Rebuilds the table keeping entries seen since `since` (doubling when they
 * fill more than a quarter of it). -1 out of memory. */
static int dset_rebuild(dset *d, int64_t since)
{
    size_t live = 0;
    for (size_t i = 0; i < d->cap; i++)
        if (d->t[i].h && d->t[i].last >= since) live++;
    size_t cap = d->cap ? d->cap : 16;
    while ((live + 1) * 4 > cap)
        cap *= 2;
    if (cap > DSET_MAX) { /* too many to keep: start over (the sliding counter keeps the count) */
        live = 0;
        cap = DSET_MAX;
        since = INT64_MAX;
    }
    dslot *t = calloc(cap, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < d->cap; i++)
        if (d->t[i].h && d->t[i].last >= since) *dset_find(t, cap, d->t[i].h) = d->t[i];
    free(d->t);
    d->t = t;
    d->cap = cap;
    d->n = live;
    return 0;
}

/* 1 when h was not seen since ts - window (and records it at ts), 0 when it
 * was, -1 out of memory. */
static int dset_touch(dset *d, uint64_t h, int64_t ts, double window)
{
    if (!h) h = 1;
    if (!d->t || (d->n + 1) * 2 > d->cap) {
        if (dset_rebuild(d, ts - (int64_t)window)) return -1;
    }
    dslot *s = dset_find(d->t, d->cap, h);
    int fresh = !s->h || (double)(ts - s->last) >= window;
    if (!s->h) d->n++;
    s->h = h;
    s->last = ts;
    return fresh;
}

/* ---- counting, baselines, alerts ------------------------------------------ */

static void evidence_add(kstate *s, int64_t seq)
{
    if (seq <= 0) return;
    s->ev[s->ev_pos] = seq;
    s->ev_pos = (s->ev_pos + 1) % PVG_MON_EVIDENCE_MAX;
    if (s->ev_n < PVG_MON_EVIDENCE_MAX) s->ev_n++;
}

static size_t evidence_copy(const int64_t *ring, unsigned n, unsigned pos, int64_t *out)
{
    unsigned start = (pos + PVG_MON_EVIDENCE_MAX - n) % PVG_MON_EVIDENCE_MAX;
    for (unsigned i = 0; i < n; i++)
        out[i] = ring[(start + i) % PVG_MON_EVIDENCE_MAX];
    return n;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* Closes the tumbling window when ts is past it: its count goes into the
 * key's and its class's history. A window that passed its threshold while
 * live is learnt as the threshold it passed, not its count: a credential's
 * legitimate heavier use is learnt within a few windows (each alerting),
 * while an attack raises the baseline by at most `factor` per window (and
 * its first alert has acted). While learning, history counts as it is. */
static void window_roll(pvg_monitor *m, kstate *s, int64_t ts)
{
    const pvg_monitor_rule_config *rc = &m->cfg.rules[s->rule];
    int64_t w = (int64_t)ceil(rc->window_s);
    int64_t e = floor_div(ts, w > 0 ? w : 1);
    if (e == s->win_epoch) return;
    if (s->win_epoch != INT64_MIN && s->win_val > 0) {
        int64_t gen = floor_div(s->win_epoch * w, (int64_t)m->cfg.history_s);
        double v = (s->win_alerted && s->win_thr < s->win_val ? s->win_thr : s->win_val) *
                   rule_scale(s->rule);
        hist_add(s->own, gen, v);
        hist_add(m->pop[s->rule][s->cls], gen, v);
    }
    s->win_epoch = e;
    s->win_val = 0;
    s->win_alerted = 0;
}

static double sliding_add(pvg_monitor *m, kstate *s, int64_t ts, double v)
{
    double width = m->cfg.rules[s->rule].window_s / SLOTS;
    int64_t e = (int64_t)floor((double)ts / width);
    int k = (int)(((e % SLOTS) + SLOTS) % SLOTS);
    if (s->slot_epoch[k] != e) {
        s->slot_epoch[k] = e;
        s->slot_val[k] = 0;
    }
    s->slot_val[k] += v;
    s->win_val += v;
    double sum = 0;
    for (int i = 0; i < SLOTS; i++)
        if (s->slot_epoch[i] > e - SLOTS && s->slot_epoch[i] <= e) sum += s->slot_val[i];
    return sum;
}

/* The threshold for s at ts and the baseline it came from. */
static double threshold_of(pvg_monitor *m, kstate *s, int64_t ts, double *baseline)
{
    const pvg_monitor_rule_config *rc = &m->cfg.rules[s->rule];
    int64_t gen = floor_div(ts, (int64_t)m->cfg.history_s);
    uint32_t b[HBUCKETS], n;
    double base = 0;
    hist_view(s->own, gen, b, &n);
    if (n >= (uint32_t)m->cfg.min_windows) {
        base = hist_max(b);
    } else {
        hist_view(m->pop[s->rule][s->cls], gen, b, &n);
        if (n >= (uint32_t)m->cfg.min_windows) base = hist_quantile(b, n, 0.5);
    }
    base /= rule_scale(s->rule);
    double fl = rc->floor;
    if (s->rule == PVG_MON_BUDGET_DRAIN && m->cfg.budget_total > 0)
        fl = rc->floor * m->cfg.budget_total;
    *baseline = base;
    double t = rc->factor * base;
    return t > fl ? t : fl;
}

static int queue_push(pvg_monitor *m, const pvg_monitor_alert *a)
{
    if (m->q_n == m->q_cap) {
        size_t cap = m->q_cap ? m->q_cap * 2 : 16;
        pvg_monitor_alert *q = malloc(cap * sizeof *q);
        if (!q) return -1;
        for (size_t i = 0; i < m->q_n; i++)
            q[i] = m->q[(m->q_head + i) % m->q_cap];
        free(m->q);
        m->q = q;
        m->q_cap = cap;
        m->q_head = 0;
    }
    m->q[(m->q_head + m->q_n) % m->q_cap] = *a;
    m->q_n++;
    return 0;
}

int pvg_monitor_next_alert(pvg_monitor *m, pvg_monitor_alert *out)
{
    if (!m->q_n) return 0;
    *out = m->q[m->q_head];
    m->q_head = (m->q_head + 1) % m->q_cap;
    m->q_n--;
    return 1;
}

static void summary_of(const pvg_monitor *m, const kstate *s, double count, double thr, double base,
                       char *buf, size_t len)
{
    double w = m->cfg.rules[s->rule].window_s;
    switch (s->rule) {
    case PVG_MON_MANY_SHOPPERS:
        snprintf(buf, len,
                 "%s read the data of %.0f distinct shoppers within %.0f s (threshold %.0f, "
                 "baseline %.0f)",
                 s->cred, count, w, thr, base);
        break;
    case PVG_MON_EXPORT_BURST:
        snprintf(buf, len,
                 "%s made %.0f exports or deletions within %.0f s (threshold %.0f, baseline %.0f)",
                 s->cred, count, w, thr, base);
        break;
    case PVG_MON_TOKEN_ADDRESSES:
        snprintf(buf, len,
                 "%s was used from %.0f distinct client addresses within %.0f s (threshold %.0f, "
                 "baseline %.0f)",
                 s->cred, count, w, thr, base);
        break;
    case PVG_MON_DP_REPEAT:
        snprintf(buf, len,
                 "%s ran %.0f near-identical DP queries [%.60s] within %.0f s (threshold %.0f, "
                 "baseline %.0f): averaging their answers cancels the noise",
                 s->cred, count, s->sig, w, thr, base);
        break;
    case PVG_MON_AUTH_FAILURES:
        snprintf(buf, len, "%.0f failed authentications within %.0f s %s (threshold %.0f)", count,
                 w, strcmp(s->sig, "*") == 0 ? "from all addresses" : "from one client address",
                 thr);
        break;
    case PVG_MON_BUDGET_DRAIN:
        snprintf(buf, len,
                 "privacy budget: epsilon %.4g spent within %.0f s (threshold %.4g, usual at most "
                 "%.4g per window)",
                 count, w, thr, base);
        break;
    default:
        snprintf(buf, len, "%s", s->cred);
    }
}

static int raise_alert(pvg_monitor *m, kstate *s, int64_t ts, double count, double thr, double base,
                       const char *summary)
{
    const pvg_monitor_rule_config *rc = &m->cfg.rules[s->rule];
    pvg_monitor_alert a;
    memset(&a, 0, sizeof a);
    a.rule = (pvg_monitor_rule)s->rule;
    snprintf(a.severity, sizeof a.severity, "%s", rc->severity);
    snprintf(a.credential, sizeof a.credential, "%s", s->cred);
    a.opened = ts;
    a.count = count;
    a.threshold = thr;
    a.action = s->cls == CLASS_OTHER ? PVG_MON_ACT_NONE : rc->action;
    if (summary)
        snprintf(a.summary, sizeof a.summary, "%s", summary);
    else
        summary_of(m, s, count, thr, base, a.summary, sizeof a.summary);
    if (s->rule == PVG_MON_BUDGET_DRAIN)
        a.n_evidence = evidence_copy(m->dp_ev, m->dp_ev_n, m->dp_ev_pos, a.evidence);
    else
        a.n_evidence = evidence_copy(s->ev, s->ev_n, s->ev_pos, a.evidence);
    if (queue_push(m, &a)) return -1;
    m->counts[s->rule]++;
    return 1;
}

/* Adds v at ts to the state's counter and raises its alert when the count
 * passes the threshold. Returns alerts raised (0/1) or -1. */
static int count_and_check(pvg_monitor *m, kstate *s, int64_t ts, double v)
{
    window_roll(m, s, ts);
    double count = sliding_add(m, s, ts, v);
    const pvg_monitor_rule_config *rc = &m->cfg.rules[s->rule];
    double fl = rc->floor;
    if (s->rule == PVG_MON_BUDGET_DRAIN && m->cfg.budget_total > 0) fl *= m->cfg.budget_total;
    if (!(count > fl)) return 0;
    double base = 0, thr = threshold_of(m, s, ts, &base);
    if (!(count > thr)) return 0;
    if (m->learning) return 0;
    if (!s->win_alerted || thr < s->win_thr) s->win_thr = thr;
    s->win_alerted = 1;
    if (ts < s->cooldown_until) return 0;
    s->cooldown_until = ts + (int64_t)ceil(rc->window_s);
    return raise_alert(m, s, ts, count, thr, base, NULL);
}

static int off_hours(pvg_monitor *m, const char *actor, int64_t ts, int64_t seq)
{
    const pvg_monitor_rule_config *rc = &m->cfg.rules[PVG_MON_OFF_HOURS];
    if (!rc->enabled || class_of(actor) != CLASS_KEY) return 0;
    kstate *s = state_of(m, PVG_MON_OFF_HOURS, actor, NULL);
    if (!s) return -1;
    evidence_add(s, seq);
    int64_t mark = floor_div(ts, 3600);
    if (mark == s->last_hour_mark) return 0;
    int hour = (int)(((mark % 24) + 24) % 24);
    int64_t day = floor_div(ts, 86400);
    int usual = s->hour_days[hour] + s->hour_days[(hour + 1) % 24] + s->hour_days[(hour + 23) % 24];
    int learnt = s->days >= (uint32_t)m->cfg.off_hours_min_days;
    if (learnt && !usual && !m->learning) { /* while learning, history counts as usual */
        if (s->alerted_hour_mark == mark) return 0;
        s->alerted_hour_mark = mark;
        /* the evidence: this hour's entries only */
        s->ev_n = 0;
        s->ev_pos = 0;
        evidence_add(s, seq);
        char summary[240];
        snprintf(summary, sizeof summary,
                 "%s used at %02d:00-%02d:59 UTC; on none of its %u days of use was it used "
                 "within an hour of that",
                 actor, hour, hour, s->days);
        return raise_alert(m, s, ts, 1, 0, 0, summary);
    }
    /* a usual hour (or still learning the key's habits): learn it */
    s->last_hour_mark = mark;
    if (day != s->last_day) {
        s->last_day = day;
        s->days++;
    }
    s->hour_days[hour]++;
    return 0;
}

/* The signature of a DP query's audit detail: the text with every number
 * replaced by '#' and the outcome dropped, so queries that differ only in
 * their parameters (clamp bounds, epsilon, quantile) look alike. */
static void dp_signature(const char *action, const char *detail, char *out, size_t len)
{
    size_t o = 0;
    const char *p = action;
    while (*p && o + 1 < len)
        out[o++] = *p++;
    if (o + 1 < len) out[o++] = ' ';
    for (p = detail ? detail : ""; *p && o + 1 < len;) {
        if (strncmp(p, "outcome=", 8) == 0) {
            p += strcspn(p, " ");
            if (*p == ' ') p++;
            continue;
        }
        if (isdigit((unsigned char)*p) || (*p == '.' && isdigit((unsigned char)p[1]))) {
            while (isdigit((unsigned char)*p) || *p == '.' || *p == 'e' || *p == '-' || *p == '+')
                p++;
            out[o++] = '#';
            continue;
        }
        out[o++] = *p++;
    }
    out[o] = 0;
}

static int is_pseudonym(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isxdigit((unsigned char)s[n])) return 0;
    return n == 2 * PVG_PSEUDONYM_BYTES;
}

static int is_action(const char *a, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(a, *list) == 0) return 1;
    return 0;
}

#define ADD(x)                                                                                     \
    do {                                                                                           \
        int r_ = (x);                                                                              \
        if (r_ < 0)                                                                                \
            oom = 1;                                                                               \
        else                                                                                       \
            raised += r_;                                                                          \
    } while (0)

int pvg_monitor_feed_audit(pvg_monitor *m, const pvg_audit_entry *e)
{
    if (!m || !e || e->seq <= m->last_seq) return 0;
    m->last_seq = e->seq;
    if (e->ts > m->now) m->now = e->ts;
    const char *actor = e->actor ? e->actor : "";
    const char *action = e->action ? e->action : "";
    const char *subject = e->subject ? e->subject : "";
    int raised = 0, oom = 0;
    static const char *const personal[] = {
        "export",         "read_events", "recommend", "consent_read",  "audit_read", "delete",
        "consent_change", "similar",     "explain",   "search_rerank", NULL};
    static const char *const dp[] = {"dp_query", "he_spend_total", NULL};
    const pvg_monitor_rule_config *R = m->cfg.rules;

    if (R[PVG_MON_MANY_SHOPPERS].enabled && class_of(actor) != CLASS_OTHER &&
        is_pseudonym(subject) && is_action(action, personal)) {
        kstate *s = state_of(m, PVG_MON_MANY_SHOPPERS, actor, NULL);
        if (!s) {
            oom = 1;
        } else {
            int fresh = dset_touch(&s->set, fnv(1469598103934665603ull, subject), e->ts,
                                   R[PVG_MON_MANY_SHOPPERS].window_s);
            if (fresh < 0) {
                oom = 1;
            } else {
                if (fresh) evidence_add(s, e->seq);
                ADD(count_and_check(m, s, e->ts, fresh));
            }
        }
    }
    if (R[PVG_MON_EXPORT_BURST].enabled &&
        (strcmp(action, "export") == 0 || strcmp(action, "delete") == 0)) {
        kstate *s = state_of(m, PVG_MON_EXPORT_BURST, actor, NULL);
        if (!s) {
            oom = 1;
        } else {
            evidence_add(s, e->seq);
            ADD(count_and_check(m, s, e->ts, 1));
        }
    }
    if (is_action(action, dp)) {
        m->dp_ev[m->dp_ev_pos] = e->seq;
        m->dp_ev_pos = (m->dp_ev_pos + 1) % PVG_MON_EVIDENCE_MAX;
        if (m->dp_ev_n < PVG_MON_EVIDENCE_MAX) m->dp_ev_n++;
        if (R[PVG_MON_DP_REPEAT].enabled) {
            char sig[96];
            dp_signature(action, e->detail, sig, sizeof sig);
            kstate *s = state_of(m, PVG_MON_DP_REPEAT, actor, sig);
            if (!s) {
                oom = 1;
            } else {
                evidence_add(s, e->seq);
                ADD(count_and_check(m, s, e->ts, 1));
            }
        }
    }
    ADD(off_hours(m, actor, e->ts, e->seq));
    return oom ? -1 : raised;
}

int pvg_monitor_feed_request(pvg_monitor *m, const pvg_monitor_request *q)
{
    if (!m || !q) return 0;
    if (q->ts > m->now) m->now = q->ts;
    int raised = 0, oom = 0;
    const pvg_monitor_rule_config *R = m->cfg.rules;
    const char *actor = q->actor ? q->actor : "";
    char ah[24] = "unknown";
    uint64_t addr_h = fnv(1469598103934665603ull, q->address ? q->address : "?");
    snprintf(ah, sizeof ah, "%016llx", (unsigned long long)addr_h);
    if (q->auth_failed) {
        if (R[PVG_MON_AUTH_FAILURES].enabled) {
            kstate *s = state_of(m, PVG_MON_AUTH_FAILURES, "", ah);
            if (!s)
                oom = 1;
            else
                ADD(count_and_check(m, s, q->ts, 1));
            s = state_of(m, PVG_MON_AUTH_FAILURES, "", "*");
            if (!s)
                oom = 1;
            else
                ADD(count_and_check(m, s, q->ts, 1));
        }
        return oom ? -1 : raised;
    }
    if (R[PVG_MON_TOKEN_ADDRESSES].enabled && class_of(actor) == CLASS_TOKEN && q->address) {
        kstate *s = state_of(m, PVG_MON_TOKEN_ADDRESSES, actor, NULL);
        if (!s) {
            oom = 1;
        } else {
            int fresh = dset_touch(&s->set, addr_h, q->ts, R[PVG_MON_TOKEN_ADDRESSES].window_s);
            if (fresh < 0)
                oom = 1;
            else
                ADD(count_and_check(m, s, q->ts, fresh));
        }
    }
    ADD(off_hours(m, actor, q->ts, 0));
    return oom ? -1 : raised;
}

int pvg_monitor_feed_charge(pvg_monitor *m, int64_t release_id, int64_t ts, double epsilon)
{
    if (!m || release_id <= m->last_release) return 0;
    m->last_release = release_id;
    if (ts > m->now) m->now = ts;
    if (!m->cfg.rules[PVG_MON_BUDGET_DRAIN].enabled || !(epsilon > 0)) return 0;
    kstate *s = state_of(m, PVG_MON_BUDGET_DRAIN, "", "budget");
    if (!s) return -1;
    return count_and_check(m, s, ts, epsilon);
}

/* ---- JSON ------------------------------------------------------------------ */

char *pvg_monitor_alert_json(const pvg_monitor_alert *a)
{
    char when[32] = "";
    time_t t = (time_t)a->opened;
    struct tm tm;
    if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *ev = json_array();
    for (size_t i = 0; i < a->n_evidence; i++)
        json_array_append_new(ev, json_integer((json_int_t)a->evidence[i]));
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:f, s:f}", "id",
                          (json_int_t)a->id, "rule", pvg_monitor_rule_name(a->rule), "severity",
                          a->severity, "credential", a->credential, "opened", when, "state",
                          a->acknowledged ? "acknowledged" : "open", "summary", a->summary,
                          "evidence", ev, "action", pvg_monitor_action_name(a->action), "count",
                          a->count, "threshold", a->threshold);
    if (!o) return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}
