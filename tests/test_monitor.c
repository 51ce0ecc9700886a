/*
 * test_monitor.c - access monitoring (include/privguide/monitor.h): a
 * week of generated normal traffic (shoppers' tokens, a support desk key, a
 * CRM integration key, an analyst's DP queries, the nightly CLI batch, model
 * builds' budget charges, typos at login), six days learnt as history and the
 * seventh replayed live: its false-alarm count is printed and must be 0. On
 * the same background, each synthetic attack (a scraping key, an
 * export/deletion burst, a token from many addresses, a DP-query averaging
 * attack, credential stuffing, a budget drain, an off-hours key) raises its
 * rule's alert within the stated delay (entries and seconds). Then the stored
 * side: alerts stored once, acknowledged, a suspension refused by
 * pvg_auth_check and lifted by resume, the offline scan; and a live server:
 * an export burst over HTTP suspends the key (403 on its next request),
 * /metrics counts the alert, an admin resumes it.
 * Timestamps are injected; no fixed sleeps (the live part polls with a bound).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "t_http.h"

#include <privguide/audit.h>
#include <privguide/auth.h>
#include <privguide/ledger.h>
#include <privguide/monitor.h>
#include <privguide/server.h>
#include <privguide/store.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DAY 86400
#define T0 1764547200 /* 2025-12-01T00:00:00Z, a Monday */
#define N_SHOPPERS 300

/* ---- a trace ---------------------------------------------------------------------- */

enum { EV_AUDIT, EV_REQ, EV_CHARGE };

typedef struct ev {
    int64_t ts;
    int kind;
    char actor[40], action[24], subject[40], detail[200], addr[24];
    int failed;
    double eps;
    int tag; /* 1: part of an attack */
} ev;

typedef struct trace {
    ev *v;
    size_t n, cap;
} trace;

static uint64_t rng_state = 42;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}
static double urand(void)
{
    return rnd() / 2147483648.0;
}

static ev *push(trace *t, int64_t ts, int kind)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 4096;
        t->v = realloc(t->v, t->cap * sizeof *t->v);
        assert_non_null(t->v);
    }
    ev *e = &t->v[t->n++];
    memset(e, 0, sizeof *e);
    e->ts = ts;
    e->kind = kind;
    return e;
}

static void shopper_subject(int u, char out[40])
{
    /* a pseudonym-shaped subject (32 hex digits) */
    snprintf(out, 40, "%08x%08x%08x%08x", 0x5eed0000u + (unsigned)u, (unsigned)u * 2654435761u,
             0xabcdef01u ^ (unsigned)u, 0x13572468u + (unsigned)u);
}

static void audit_ev(trace *t, int64_t ts, const char *actor, const char *action,
                     const char *subject, const char *detail, int tag)
{
    ev *e = push(t, ts, EV_AUDIT);
    snprintf(e->actor, sizeof e->actor, "%s", actor);
    snprintf(e->action, sizeof e->action, "%s", action);
    snprintf(e->subject, sizeof e->subject, "%s", subject);
    snprintf(e->detail, sizeof e->detail, "%s", detail);
    e->tag = tag;
}

static void req_ev(trace *t, int64_t ts, const char *actor, const char *addr, int failed, int tag)
{
    ev *e = push(t, ts, EV_REQ);
    snprintf(e->actor, sizeof e->actor, "%s", actor ? actor : "");
    snprintf(e->addr, sizeof e->addr, "%s", addr);
    e->failed = failed;
    e->tag = tag;
}

static void charge_ev(trace *t, int64_t ts, double eps, int tag)
{
    ev *e = push(t, ts, EV_CHARGE);
    e->eps = eps;
    e->tag = tag;
}

static const char *DP_QUERIES[] = {
    "query=count dataset=default type=purchase value=quantity group=none clamp=0:0 q=0.5 bins=10",
    "query=count dataset=default type=purchase value=quantity group=country clamp=0:0 q=0.5 "
    "bins=10",
    "query=sum dataset=default type=purchase value=amount group=category clamp=0:100 q=0.5 "
    "bins=10",
    "query=mean dataset=default type=purchase value=amount group=none clamp=0:200 q=0.5 bins=10",
    "query=histogram dataset=default type=purchase value=amount group=none clamp=0:500 q=0.5 "
    "bins=20",
    "query=quantile dataset=default type=purchase value=amount group=none clamp=0:500 q=0.9 "
    "bins=10",
    "query=top-items dataset=default type=view value=quantity group=none clamp=0:0 q=0.5 bins=10",
    "query=count dataset=default type=view value=events group=category clamp=0:0 q=0.5 bins=10",
};
#define N_DPQ (sizeof DP_QUERIES / sizeof DP_QUERIES[0])

/* One normal day (day d from T0). */
static void normal_day(trace *t, int d)
{
    int64_t day0 = T0 + (int64_t)d * DAY;
    char subj[40], actor[40], addr[24], detail[220];
    /* shoppers: a third visit on a given day, 1-3 sessions, from their home or phone */
    for (int u = 0; u < N_SHOPPERS; u++) {
        if (rnd() % 3) continue;
        shopper_subject(u, subj);
        snprintf(actor, sizeof actor, "token:%016x", 0x7000u + (unsigned)u);
        int sessions = 1 + (int)(rnd() % 3);
        for (int s = 0; s < sessions; s++) {
            int64_t ts = day0 + 7 * 3600 + (int64_t)(urand() * 15 * 3600);
            snprintf(addr, sizeof addr, "10.%u.%u.%u", (unsigned)u % 200, (unsigned)(u / 200),
                     rnd() % 4 ? 1u : 2u); /* home, sometimes the phone */
            int reqs = 2 + (int)(rnd() % 6);
            for (int q = 0; q < reqs; q++) {
                int64_t at = ts + q * (20 + (int)(rnd() % 90));
                req_ev(t, at, actor, addr, 0, 0);
                audit_ev(t, at, actor, "recommend", subj, "purpose=recommend outcome=allowed k=10",
                         0);
            }
            if (rnd() % 40 == 0)
                audit_ev(t, ts + 600, actor, "export", subj, "purpose=export outcome=allowed", 0);
            if (rnd() % 25 == 0)
                audit_ev(t, ts + 700, actor, "consent_read", subj,
                         "purpose=consent outcome=allowed", 0);
        }
        if (rnd() % 400 == 0)
            audit_ev(t, day0 + 20 * 3600, actor, "delete", subj, "purpose=erasure outcome=allowed",
                     0);
    }
    /* the support desk (an admin key): 08-18 UTC, ~20 shoppers an hour */
    for (int h = 8; h < 18; h++)
        for (int k = 0; k < 20; k++) {
            int u = (int)(rnd() % N_SHOPPERS);
            shopper_subject(u, subj);
            int64_t at = day0 + h * 3600 + (int64_t)(urand() * 3600);
            const char *act = rnd() % 4 == 0 ? "export" : "consent_read";
            audit_ev(t, at, "key:00000000000a0001", act, subj,
                     strcmp(act, "export") == 0 ? "purpose=export outcome=allowed"
                                                : "purpose=consent outcome=allowed",
                     0);
            req_ev(t, at, "key:00000000000a0001", "192.168.1.20", 0, 0);
        }
    /* the CRM integration (an admin key): every hour, the consent of ~150 shoppers */
    for (int h = 0; h < 24; h++) {
        int n = 130 + (int)(rnd() % 40);
        for (int k = 0; k < n; k++) {
            int u = (int)(rnd() % N_SHOPPERS);
            shopper_subject(u, subj);
            int64_t at = day0 + h * 3600 + 60 + k;
            audit_ev(t, at, "key:00000000000c0001", "consent_read", subj,
                     "purpose=consent outcome=allowed", 0);
        }
    }
    /* the analyst: ~10 DP queries a day on working hours, sometimes a query twice */
    int nq = 6 + (int)(rnd() % 6);
    for (int q = 0; q < nq; q++) {
        int64_t at = day0 + 9 * 3600 + (int64_t)(urand() * 8 * 3600);
        snprintf(detail, sizeof detail, "purpose=dp_release outcome=allowed %s eps=%g",
                 DP_QUERIES[rnd() % N_DPQ], (rnd() % 2) ? 0.1 : 0.2);
        audit_ev(t, at, "cli", "dp_query", "*", detail, 0);
        charge_ev(t, at, 0.1 + 0.1 * (rnd() % 2), 0);
    }
    /* the nightly batch at 02:00: training and every shopper's list */
    audit_ev(t, day0 + 2 * 3600, "cli", "read_all", "*", "purpose=training outcome=allowed", 0);
    for (int u = 0; u < N_SHOPPERS; u++) {
        shopper_subject(u, subj);
        audit_ev(t, day0 + 2 * 3600 + 300 + u / 10, "cli", "recommend", subj,
                 "purpose=recommend outcome=allowed k=20 batch=1", 0);
    }
    /* the server's DP releases of the new model build */
    charge_ev(t, day0 + 2 * 3600 + 900, 1.0, 0);
    charge_ev(t, day0 + 2 * 3600 + 901, 0.5, 0);
    /* typos at login: a few an hour from shoppers' addresses */
    for (int h = 6; h < 23; h++) {
        int n = (int)(rnd() % 4);
        for (int k = 0; k < n; k++) {
            snprintf(addr, sizeof addr, "10.%u.0.1", rnd() % 200);
            req_ev(t, day0 + h * 3600 + (int64_t)(urand() * 3600), NULL, addr, 1, 0);
        }
    }
}

static int ev_cmp(const void *a, const void *b)
{
    const ev *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x < y ? -1 : x > y;
}

static void trace_sort(trace *t)
{
    /* stable by position: ties keep their order of generation */
    qsort(t->v, t->n, sizeof *t->v, ev_cmp);
}

typedef struct replay_out {
    long long alerts, by_rule[PVG_MON_N_RULES];
    pvg_monitor_alert first[PVG_MON_N_RULES];
    int64_t first_at[PVG_MON_N_RULES];               /* ts of the event that raised it */
    long long attack_events_before[PVG_MON_N_RULES]; /* tagged events fed up to it */
    int64_t seq;
    const char *attacker;     /* alerts on other credentials are false alarms */
    int expect_rule;          /* the attack's rule (-1: none) */
    double live_ns_per_event; /* CPU time of the live replay per event fed */
    size_t live_events;
    long long off_target; /* alerts naming another credential than the attacker */
} replay_out;

/* Feeds t[from, to) to m (audit entries get seqs from out->seq); collects alerts. */
static void replay(pvg_monitor *m, const trace *t, size_t from, size_t to, replay_out *out)
{
    long long tagged = 0;
    for (size_t i = from; i < to; i++) {
        const ev *e = &t->v[i];
        int r = 0;
        if (e->tag) tagged++;
        if (e->kind == EV_AUDIT) {
            pvg_audit_entry a;
            memset(&a, 0, sizeof a);
            a.seq = ++out->seq;
            a.ts = e->ts;
            a.actor = e->actor;
            a.action = e->action;
            a.subject = e->subject;
            a.detail = e->detail;
            r = pvg_monitor_feed_audit(m, &a);
        } else if (e->kind == EV_REQ) {
            pvg_monitor_request q = {e->ts, e->actor[0] ? e->actor : NULL, e->addr, e->failed};
            r = pvg_monitor_feed_request(m, &q);
        } else {
            r = pvg_monitor_feed_charge(m, (int64_t)i + 1, e->ts, e->eps);
        }
        assert_true(r >= 0);
        pvg_monitor_alert a;
        while (pvg_monitor_next_alert(m, &a)) {
            out->alerts++;
            /* a false alarm: another rule than the attack's, on another credential */
            if ((int)a.rule != out->expect_rule &&
                (!out->attacker || strcmp(a.credential, out->attacker) != 0))
                out->off_target++;
            if (out->by_rule[a.rule]++ == 0) {
                out->first[a.rule] = a;
                out->first_at[a.rule] = e->ts;
                out->attack_events_before[a.rule] = tagged;
            }
        }
    }
}

static pvg_monitor *new_monitor(void)
{
    pvg_monitor_config c;
    pvg_monitor_config_init(&c);
    c.budget_total = 100;
    pvg_monitor *m = NULL;
    pvg_error err;
    assert_int_equal(pvg_monitor_new(&c, &m, &err), PVG_OK);
    return m;
}

/* A week: 6 days learnt as history, then the 7th (index 6) day live; the
 * attack generator (may be NULL) adds its events on day 6. */
typedef void (*attack_fn)(trace *t, int64_t day6);

static void run_week(attack_fn attack, const char *attacker, int expect_rule, replay_out *out,
                     long long *first_sight)
{
    rng_state = 42;
    trace t = {0};
    for (int d = 0; d < 6; d++)
        normal_day(&t, d);
    trace_sort(&t);
    size_t hist_n = t.n;
    normal_day(&t, 6);
    if (attack) attack(&t, T0 + 6 * (int64_t)DAY);
    qsort(t.v + hist_n, t.n - hist_n, sizeof *t.v, ev_cmp);
    memset(out, 0, sizeof *out);
    out->attacker = attacker;
    out->expect_rule = expect_rule;
    pvg_monitor *m = new_monitor();
    if (first_sight) { /* the same history, had it been live: alerts at first sight */
        replay_out h;
        memset(&h, 0, sizeof h);
        replay(m, &t, 0, hist_n, &h);
        *first_sight = h.alerts;
        out->seq = h.seq;
    } else {
        pvg_monitor_set_learning(m, 1);
        replay(m, &t, 0, hist_n, out);
        pvg_monitor_set_learning(m, 0);
        assert_int_equal(out->alerts, 0); /* learning raises nothing */
    }
    long long hist_alerts = out->alerts;
    memset(out->by_rule, 0, sizeof out->by_rule);
    out->alerts = 0;
    out->off_target = 0;
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    replay(m, &t, hist_n, t.n, out);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    out->live_events = t.n - hist_n;
    out->live_ns_per_event =
        ((double)(c1.tv_sec - c0.tv_sec) * 1e9 + (double)(c1.tv_nsec - c0.tv_nsec)) /
        (double)(t.n - hist_n);
    (void)hist_alerts;
    pvg_monitor_free(m);
    free(t.v);
}

/* ---- the normal day --------------------------------------------------------------- */

static void test_normal_week_no_false_alarms(void **state)
{
    (void)state;
    replay_out o;
    run_week(NULL, NULL, -1, &o, NULL);
    printf("monitor: normal day 7 after 6 days of history: %lld false alarm(s) in %zu events "
           "(%.0f ns of CPU per event fed)\n",
           o.alerts, o.live_events, o.live_ns_per_event);
    for (int r = 0; r < PVG_MON_N_RULES; r++)
        if (o.by_rule[r])
            printf("  false alarm %s: %s\n", pvg_monitor_rule_name((pvg_monitor_rule)r),
                   o.first[r].summary);
    assert_int_equal(o.alerts, 0);
    /* the same week with the history evaluated live from an empty engine */
    long long first_sight = 0;
    run_week(NULL, NULL, -1, &o, &first_sight);
    printf("monitor: the 6 history days evaluated live from nothing: %lld alert(s) at first "
           "sight (no baseline yet); day 7 then: %lld\n",
           first_sight, o.alerts);
    assert_int_equal(o.alerts, 0);
}

/* ---- the attacks ------------------------------------------------------------------ */

#define ATTACK_T (13 * 3600) /* 13:00 UTC on day 6 */

static void atk_scrape(trace *t, int64_t day6)
{
    char subj[40];
    for (int u = 0; u < N_SHOPPERS; u++) { /* a leaked key reads every shopper, 2 a second */
        shopper_subject(u, subj);
        audit_ev(t, day6 + ATTACK_T + u / 2, "key:00000000000b0bad", "export", subj,
                 "purpose=export outcome=allowed", 1);
    }
}

static void atk_scrape_slow(trace *t, int64_t day6)
{
    char subj[40];
    for (int u = 0; u < N_SHOPPERS; u++) { /* the support key, one shopper every 3 s */
        shopper_subject(u, subj);
        audit_ev(t, day6 + ATTACK_T + u * 3, "key:00000000000a0001", "consent_read", subj,
                 "purpose=consent outcome=allowed", 1);
    }
}

static void atk_burst(trace *t, int64_t day6)
{
    char subj[40];
    for (int u = 0; u < 40; u++) { /* the CRM key deletes shoppers, one every 5 s */
        shopper_subject(u, subj);
        audit_ev(t, day6 + ATTACK_T + u * 5, "key:00000000000c0001", "delete", subj,
                 "purpose=erasure outcome=allowed", 1);
    }
}

static void atk_token_addrs(trace *t, int64_t day6)
{
    char addr[24];
    for (int k = 0; k < 20; k++) { /* a stolen token replayed from a botnet */
        snprintf(addr, sizeof addr, "203.0.113.%d", k + 1);
        req_ev(t, day6 + ATTACK_T + k * 60, "token:0000000000007005", addr, 0, 1);
    }
}

static void atk_dp_average(trace *t, int64_t day6)
{
    char detail[220];
    for (int k = 0; k < 30; k++) { /* the same mean, its clamp nudged each time */
        snprintf(detail, sizeof detail,
                 "purpose=dp_release outcome=allowed query=mean dataset=default type=purchase "
                 "value=amount group=none clamp=0:%d q=0.5 bins=10 eps=0.05",
                 200 + k);
        audit_ev(t, day6 + ATTACK_T + k * 30, "cli", "dp_query", "*", detail, 1);
    }
}

static void atk_stuffing(trace *t, int64_t day6)
{
    for (int k = 0; k < 500; k++) /* 20 failed logins a second from one address */
        req_ev(t, day6 + ATTACK_T + k / 20, NULL, "198.51.100.7", 1, 1);
}

static void atk_stuffing_spread(trace *t, int64_t day6)
{
    char addr[24];
    for (int k = 0; k < 500; k++) { /* 5 a second, each from another address (under the limit) */
        snprintf(addr, sizeof addr, "198.51.%d.%d", k / 250, k % 250);
        req_ev(t, day6 + ATTACK_T + k / 5, NULL, addr, 1, 1);
    }
}

static void atk_budget(trace *t, int64_t day6)
{
    for (int k = 0; k < 40; k++) { /* queries of 0.5 each, one a minute */
        audit_ev(t, day6 + ATTACK_T + k * 60, "cli", "dp_query", "*",
                 k % 2 ? "purpose=dp_release outcome=allowed query=sum dataset=default "
                         "type=purchase value=amount group=country clamp=0:100 q=0.5 bins=10 "
                         "eps=0.5"
                       : "purpose=dp_release outcome=allowed query=count dataset=default "
                         "type=view value=quantity group=category clamp=0:0 q=0.5 bins=10 "
                         "eps=0.5",
                 1);
        charge_ev(t, day6 + ATTACK_T + k * 60, 0.5, 1);
    }
}

static void atk_off_hours(trace *t, int64_t day6)
{
    char subj[40];
    shopper_subject(7, subj); /* the support key at 03:10 */
    audit_ev(t, day6 + 3 * 3600 + 600, "key:00000000000a0001", "export", subj,
             "purpose=export outcome=allowed", 1);
}

typedef struct attack_case {
    const char *name;
    attack_fn fn;
    pvg_monitor_rule rule;
    const char *credential;
    const char *attacker; /* the credential the attack uses ("cli", "key:..."); NULL: none */
    long long max_events; /* attack events fed when the alert must be up */
    int64_t max_seconds;  /* from the attack's first event */
    int64_t start;        /* seconds from day 6 00:00 */
    pvg_monitor_action action;
} attack_case;

static void check_attack(const attack_case *c)
{
    replay_out o;
    run_week(c->fn, c->attacker, (int)c->rule, &o, NULL);
    long long n = o.by_rule[c->rule];
    long long others = o.off_target; /* alerts on the attacker by other rules are fine */
    int64_t delay = n ? o.first_at[c->rule] - (T0 + 6 * (int64_t)DAY + c->start) : -1;
    printf("monitor: attack %-22s -> %s: %s after %lld attack event(s), %lld s (limits %lld, "
           "%lld s); action %s; false alarms %lld\n",
           c->name, pvg_monitor_rule_name(c->rule), n ? "RAISED" : "MISSED",
           n ? o.attack_events_before[c->rule] : 0, (long long)delay, c->max_events,
           (long long)c->max_seconds, n ? pvg_monitor_action_name(o.first[c->rule].action) : "-",
           others);
    if (n) printf("    %s\n", o.first[c->rule].summary);
    assert_true(n >= 1);
    assert_true(o.attack_events_before[c->rule] <= c->max_events);
    assert_true(delay >= 0 && delay <= c->max_seconds);
    assert_string_equal(o.first[c->rule].credential, c->credential);
    assert_int_equal(o.first[c->rule].action, c->action);
    assert_true(o.first[c->rule].n_evidence > 0 || c->rule == PVG_MON_TOKEN_ADDRESSES ||
                c->rule == PVG_MON_AUTH_FAILURES);
    for (int r = 0; r < PVG_MON_N_RULES; r++)
        if (r != (int)c->rule && o.by_rule[r])
            printf("    also (%s) %s: %s\n", o.first[r].credential,
                   pvg_monitor_rule_name((pvg_monitor_rule)r), o.first[r].summary);
    assert_int_equal(others, 0);
}

static void test_attack_scraping_key(void **state)
{
    (void)state;
    attack_case c = {"scraping (new key)",
                     atk_scrape,
                     PVG_MON_MANY_SHOPPERS,
                     "key:00000000000b0bad",
                     "key:00000000000b0bad",
                     101,
                     60,
                     ATTACK_T,
                     PVG_MON_ACT_SUSPEND};
    check_attack(&c);
}

static void test_attack_scraping_known_key(void **state)
{
    (void)state;
    attack_case c = {"scraping (support key)",
                     atk_scrape_slow,
                     PVG_MON_MANY_SHOPPERS,
                     "key:00000000000a0001",
                     "key:00000000000a0001",
                     101,
                     303,
                     ATTACK_T,
                     PVG_MON_ACT_SUSPEND};
    check_attack(&c);
}

static void test_attack_delete_burst(void **state)
{
    (void)state;
    attack_case c = {"deletion burst",
                     atk_burst,
                     PVG_MON_EXPORT_BURST,
                     "key:00000000000c0001",
                     "key:00000000000c0001",
                     21,
                     105,
                     ATTACK_T,
                     PVG_MON_ACT_SUSPEND};
    check_attack(&c);
}

static void test_attack_token_addresses(void **state)
{
    (void)state;
    attack_case c = {"token from many addrs",
                     atk_token_addrs,
                     PVG_MON_TOKEN_ADDRESSES,
                     "token:0000000000007005",
                     "token:0000000000007005",
                     6,
                     360,
                     ATTACK_T,
                     PVG_MON_ACT_SUSPEND};
    check_attack(&c);
}

static void test_attack_dp_averaging(void **state)
{
    (void)state;
    attack_case c = {"DP averaging", atk_dp_average,  PVG_MON_DP_REPEAT, "cli", "cli", 6, 180,
                     ATTACK_T,       PVG_MON_ACT_NONE};
    check_attack(&c);
}

static void test_attack_credential_stuffing(void **state)
{
    (void)state;
    attack_case c = {
        "credential stuffing", atk_stuffing, PVG_MON_AUTH_FAILURES, "", NULL, 31, 2, ATTACK_T,
        PVG_MON_ACT_NONE};
    check_attack(&c);
    attack_case d = {
        "stuffing, spread", atk_stuffing_spread, PVG_MON_AUTH_FAILURES, "", NULL, 31, 7,
        ATTACK_T,           PVG_MON_ACT_NONE};
    check_attack(&d);
}

static void test_attack_budget_drain(void **state)
{
    (void)state;
    /* usual: at most 1.5 an hour (the nightly build's releases) -> threshold 3 x 1.5 (bucket
     * edge) */
    /* each query is two events (its audit entry, its charge): 11 queries */
    attack_case c = {"budget drain", atk_budget,      PVG_MON_BUDGET_DRAIN, "", "cli", 22, 600,
                     ATTACK_T,       PVG_MON_ACT_NONE};
    check_attack(&c);
}

static void test_attack_off_hours(void **state)
{
    (void)state;
    attack_case c = {"off-hours key",
                     atk_off_hours,
                     PVG_MON_OFF_HOURS,
                     "key:00000000000a0001",
                     "key:00000000000a0001",
                     1,
                     0,
                     3 * 3600 + 600,
                     PVG_MON_ACT_NONE};
    check_attack(&c);
}

/* The engine's contract: learning raises nothing, old seqs are ignored, bad
 * configurations are refused, the alert JSON has the contract's fields. */
/* A shop's many shopper tokens (one state each) cannot fill the engine's
 * state map so that a key's export burst afterwards goes unseen. */
static void test_tokens_leave_room_for_keys(void **state)
{
    (void)state;
    pvg_monitor *m = NULL;
    assert_int_equal(pvg_monitor_new(NULL, &m, NULL), PVG_OK);
    int64_t t = 1800000000;
    char actor[64];
    for (int i = 0; i < 120000; i++) {
        snprintf(actor, sizeof actor, "token:%016x", i);
        pvg_monitor_request q = {t, actor, "10.0.0.1", 0};
        (void)pvg_monitor_feed_request(m, &q);
    }
    int raised = 0;
    for (int i = 0; i < 200; i++) {
        pvg_audit_entry a;
        memset(&a, 0, sizeof a);
        a.seq = i + 1;
        a.ts = t + 10 + i;
        a.actor = "key:00000000deadbeef";
        a.action = "export";
        a.subject = "00112233445566778899aabbccddeeff";
        a.detail = "";
        int r = pvg_monitor_feed_audit(m, &a);
        assert_true(r >= 0);
        raised += r;
    }
    assert_true(raised >= 1);
    pvg_monitor_free(m);
}

/* States idle for two history periods are dropped when the map is full:
 * a shopper token first seen after 120,000 others went quiet is watched
 * (its many-addresses alert is raised), where it was ignored until a
 * restart before. */
static void test_idle_states_evicted(void **state)
{
    (void)state;
    pvg_monitor *m = NULL;
    assert_int_equal(pvg_monitor_new(NULL, &m, NULL), PVG_OK);
    int64_t t = 1800000000;
    char actor[64];
    for (int i = 0; i < 120000; i++) {
        snprintf(actor, sizeof actor, "token:%016x", i);
        pvg_monitor_request q = {t, actor, "10.0.0.1", 0};
        (void)pvg_monitor_feed_request(m, &q);
    }
    /* fifteen days later (history: 7 days), one new token from many addresses */
    int64_t later = t + 15 * 86400;
    int raised = 0;
    char addr[32];
    for (int i = 0; i < 40; i++) {
        snprintf(addr, sizeof addr, "10.1.%d.%d", i / 200, i % 200 + 1);
        pvg_monitor_request q = {later + i, "token:00000000feedface", addr, 0};
        int r = pvg_monitor_feed_request(m, &q);
        assert_true(r >= 0);
        raised += r;
    }
    long long counts[PVG_MON_N_RULES];
    pvg_monitor_counts(m, counts);
    fprintf(stderr, "after eviction: %d alerts raised, token_addresses %lld\n", raised,
            counts[PVG_MON_TOKEN_ADDRESSES]);
    assert_true(counts[PVG_MON_TOKEN_ADDRESSES] >= 1);
    pvg_monitor_free(m);
}

/* "Why this?" explanations and search re-ranking read a shopper's history:
 * a key walking many shoppers through either is the many-shoppers pattern. */
static void test_explain_and_rerank_are_personal_reads(void **state)
{
    (void)state;
    static const char *const actions[] = {"explain", "search_rerank"};
    for (size_t k = 0; k < 2; k++) {
        pvg_monitor *m = new_monitor();
        pvg_audit_entry e = {0};
        char subj[40];
        e.actor = "key:00000000000000ee";
        e.action = actions[k];
        e.detail = "purpose=recommend outcome=allowed";
        for (int i = 1; i <= 400; i++) {
            shopper_subject(i, subj);
            e.subject = subj;
            e.seq = i;
            e.ts = T0 + i;
            assert_true(pvg_monitor_feed_audit(m, &e) >= 0);
        }
        long long counts[PVG_MON_N_RULES];
        pvg_monitor_counts(m, counts);
        assert_true(counts[PVG_MON_MANY_SHOPPERS] >= 1);
        pvg_monitor_free(m);
    }
}

static void test_engine_contract(void **state)
{
    (void)state;
    pvg_monitor_config c;
    pvg_monitor_config_init(&c);
    c.rules[PVG_MON_EXPORT_BURST].window_s = 0;
    pvg_monitor *m = NULL;
    pvg_error err;
    assert_int_equal(pvg_monitor_new(&c, &m, &err), PVG_ERR_INVALID);
    assert_non_null(strstr(err.text, "export_burst"));
    m = new_monitor();
    char subj[40];
    shopper_subject(1, subj);
    pvg_audit_entry e = {0};
    e.actor = "key:00000000000000ff";
    e.action = "export";
    e.subject = subj;
    e.detail = "purpose=export outcome=allowed";
    int raised = 0;
    for (int i = 1; i <= 21; i++) {
        e.seq = i;
        e.ts = T0 + i;
        raised += pvg_monitor_feed_audit(m, &e);
    }
    assert_int_equal(raised, 1); /* the 21st export within 600 s */
    e.seq = 5;                   /* an old seq: ignored */
    assert_int_equal(pvg_monitor_feed_audit(m, &e), 0);
    assert_int_equal(pvg_monitor_last_seq(m), 21);
    pvg_monitor_alert a;
    assert_int_equal(pvg_monitor_next_alert(m, &a), 1);
    assert_int_equal(pvg_monitor_next_alert(m, &a), 0);
    char *j = pvg_monitor_alert_json(&a);
    json_t *o = json_loads(j, 0, NULL);
    free(j);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "rule")), "export_burst");
    assert_string_equal(json_string_value(json_object_get(o, "state")), "open");
    assert_string_equal(json_string_value(json_object_get(o, "action")), "suspended");
    assert_string_equal(json_string_value(json_object_get(o, "opened")), "2025-12-01T00:00:21Z");
    assert_int_equal(json_array_size(json_object_get(o, "evidence")), 21);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(o, "evidence"), 20)), 21);
    json_decref(o);
    long long counts[PVG_MON_N_RULES];
    pvg_monitor_counts(m, counts);
    assert_int_equal(counts[PVG_MON_EXPORT_BURST], 1);
    pvg_monitor_free(m);
}

/* ---- the stored side ---------------------------------------------------------------- */

static char DIR_[256];

static pvg_store *fresh_store(void)
{
    snprintf(DIR_, sizeof DIR_, "/tmp/pvg_test_monitor_XXXXXX");
    assert_non_null(mkdtemp(DIR_));
    char dd[300];
    snprintf(dd, sizeof dd, "%s/data", DIR_);
    pvg_error err;
    assert_int_equal(pvg_store_init(dd, NULL, &err), PVG_OK);
    pvg_store *s = NULL;
    assert_int_equal(pvg_store_open(dd, &s, &err), PVG_OK);
    return s;
}

static void rm_dir(void)
{
    char dd[300], kf[600];
    snprintf(dd, sizeof dd, "%s/data", DIR_);
    if (pvg_store_key_file(dd, NULL, kf, sizeof kf, NULL) == PVG_OK) unlink(kf);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", DIR_);
    assert_int_equal(system(cmd), 0);
}

static int count_alert(void *ctx, const pvg_monitor_alert *a)
{
    (void)a;
    (*(int *)ctx)++;
    return 0;
}

static void test_store_alerts_and_suspension(void **state)
{
    (void)state;
    pvg_store *s = fresh_store();
    pvg_error err;
    char *cred = NULL;
    pvg_principal p;
    assert_int_equal(pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "t", 0, &cred, &p, &err), PVG_OK);
    pvg_monitor_alert a;
    memset(&a, 0, sizeof a);
    a.rule = PVG_MON_EXPORT_BURST;
    snprintf(a.severity, sizeof a.severity, "critical");
    snprintf(a.credential, sizeof a.credential, "key:%s", p.key_id);
    a.opened = T0;
    a.n_evidence = 2;
    a.evidence[0] = 3;
    a.evidence[1] = 4;
    snprintf(a.summary, sizeof a.summary, "a burst");
    int is_new = 0;
    assert_int_equal(pvg_monitor_alert_store(s, &a, &is_new, &err), PVG_OK);
    assert_int_equal(is_new, 1);
    assert_int_equal(a.id, 1);
    int64_t id = a.id;
    a.id = 0;
    assert_int_equal(pvg_monitor_alert_store(s, &a, &is_new, &err), PVG_OK); /* a re-scan */
    assert_int_equal(is_new, 0);
    assert_int_equal(a.id, id);
    int n = 0;
    assert_int_equal(pvg_monitor_alerts_foreach(s, 0, count_alert, &n, &err), PVG_OK);
    assert_int_equal(n, 1);
    assert_int_equal(pvg_monitor_alert_ack(s, 99, "cli", &err), PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_monitor_alert_ack(s, id, "cli", &err), PVG_OK);
    n = 0;
    assert_int_equal(pvg_monitor_alerts_foreach(s, 0, count_alert, &n, &err), PVG_OK);
    assert_int_equal(n, 0);
    n = 0;
    assert_int_equal(pvg_monitor_alerts_foreach(s, 1, count_alert, &n, &err), PVG_OK);
    assert_int_equal(n, 1);

    /* suspension: refused by pvg_auth_check in any process, until resumed */
    pvg_principal who;
    assert_int_equal(pvg_auth_check(s, cred, &who, &err), PVG_OK);
    assert_int_equal(pvg_monitor_suspend(s, "0123456789abcdef", "cli", NULL, &err),
                     PVG_ERR_NOT_FOUND);
    assert_int_equal(pvg_monitor_suspend(s, "../x", "cli", NULL, &err), PVG_ERR_INVALID);
    assert_int_equal(pvg_monitor_resume(s, p.key_id, "cli", &err), PVG_ERR_STATE);
    assert_int_equal(pvg_monitor_suspend(s, p.key_id, "cli", "test", &err), PVG_OK);
    assert_int_equal(pvg_auth_check(s, cred, &who, &err), PVG_ERR_STATE);
    assert_non_null(strstr(err.text, "suspended"));
    pvg_store *s2 = NULL; /* another connection, as another process would have */
    char dd[300];
    snprintf(dd, sizeof dd, "%s/data", DIR_);
    assert_int_equal(pvg_store_open(dd, &s2, &err), PVG_OK);
    assert_int_equal(pvg_auth_check(s2, cred, &who, &err), PVG_ERR_STATE);
    assert_int_equal(pvg_monitor_resume(s2, p.key_id, "cli", &err), PVG_OK);
    assert_int_equal(pvg_auth_check(s, cred, &who, &err), PVG_OK);
    pvg_store_free(s2);
    /* every step is in the audit log */
    pvg_audit_head_info h;
    assert_int_equal(pvg_audit_head(s, &h, &err), PVG_OK);
    assert_true(h.seq >= 3); /* ack, suspend, resume */
    pvg_auth_credential_free(cred);
    pvg_store_free(s);
    rm_dir();
}

/* The offline scan finds a burst in the stored log and stores its alert once. */
static void test_scan_stored_log(void **state)
{
    (void)state;
    pvg_store *s = fresh_store();
    pvg_error err;
    char subj[40];
    for (int i = 0; i < 30; i++) {
        shopper_subject(i, subj);
        pvg_audit_record r = {0, "key:00000000000000ee", "export", subj,
                              "purpose=export outcome=allowed"};
        assert_int_equal(pvg_audit_append(s, &r, NULL, &err), PVG_OK);
    }
    pvg_monitor_scan_report rep;
    assert_int_equal(pvg_monitor_scan(s, NULL, &rep, &err), PVG_OK);
    printf("monitor: scan of a stored log with 30 exports: %lld entries, %lld alert(s)\n",
           rep.entries, rep.raised);
    assert_int_equal(rep.entries, 30);
    assert_int_equal(rep.by_rule[PVG_MON_EXPORT_BURST], 1);
    assert_int_equal(rep.stored, 1);
    assert_int_equal(pvg_monitor_scan(s, NULL, &rep, &err), PVG_OK);
    assert_int_equal(rep.raised, 1);
    assert_int_equal(rep.stored, 0); /* already stored */
    pvg_store_free(s);
    rm_dir();
}

/* ---- a live server ---------------------------------------------------------------------- */

static int PORT;

static int http_status(const char *method, const char *path, const char *cred, char **body)
{
    t_http_connect_to(&PORT);
    t_http_resp r;
    if (t_http(method, path, cred, NULL, &r) != 0) return -1;
    if (body) {
        *body = r.body;
        r.body = NULL;
    }
    t_http_resp_free(&r);
    return r.status;
}

static void test_server_burst_suspends(void **state)
{
    (void)state;
    pvg_store *s = fresh_store();
    pvg_error err;
    for (int u = 0; u < 30; u++) {
        char user[16];
        snprintf(user, sizeof user, "s%d", u);
        pvg_event e;
        memset(&e, 0, sizeof e);
        e.type = PVG_EVENT_PURCHASE;
        e.item = "I1";
        e.ts = 1300000000;
        int outcome = 0;
        assert_int_equal(pvg_store_event_put(s, user, &e, NULL, &outcome, &err), PVG_OK);
    }
    char *admin = NULL, *rogue = NULL, *other = NULL;
    pvg_principal p, pr, po;
    assert_int_equal(pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "ops", 0, &admin, &p, &err), PVG_OK);
    assert_int_equal(pvg_auth_apikey_create(s, PVG_ROLE_ADMIN, "rogue", 0, &rogue, &pr, &err),
                     PVG_OK);
    assert_int_equal(pvg_auth_apikey_create(s, PVG_ROLE_ANALYST, "bi", 0, &other, &po, &err),
                     PVG_OK);
    pvg_store_free(s);
    char dd[300];
    snprintf(dd, sizeof dd, "%s/data", DIR_);
    pvg_server_options o;
    memset(&o, 0, sizeof o);
    o.data_dir = dd;
    o.threads = 2;
    o.allow_insecure_rng = 1;
    pvg_server *srv = NULL;
    assert_int_equal(pvg_server_start(&o, &srv, &err), PVG_OK);
    PORT = pvg_server_port(srv);
    char path[200], *body = NULL;

    /* an admin suspends the analyst key: 403 on its next request; resume restores it */
    snprintf(path, sizeof path, "/v1/admin/credentials/%s/suspend", po.key_id);
    assert_int_equal(http_status("POST", path, other, NULL), 403); /* not an admin */
    assert_int_equal(http_status("POST", path, admin, NULL), 200);
    assert_int_equal(http_status("GET", "/v1/whoami", other, &body), 403);
    assert_non_null(strstr(body, "suspended"));
    free(body);
    snprintf(path, sizeof path, "/v1/admin/credentials/%s/resume", po.key_id);
    assert_int_equal(http_status("POST", path, admin, NULL), 200);
    assert_int_equal(http_status("GET", "/v1/whoami", other, NULL), 200);
    assert_int_equal(http_status("POST", path, admin, NULL), 409); /* not suspended any more */

    /* the rogue admin key exports 25 shoppers: the monitor suspends it */
    int status = 0, exported = 0;
    for (int u = 0; u < 25 && status != 403; u++) {
        snprintf(path, sizeof path, "/v1/users/s%d/data", u);
        status = http_status("GET", path, rogue, NULL);
        if (status == 200) exported++;
    }
    /* the monitor thread acts within a pass (<= 1 s); poll with a bound */
    double waited = 0;
    while ((status = http_status("GET", "/v1/whoami", rogue, NULL)) != 403 && waited < 10) {
        struct timespec d = {0, 20 * 1000 * 1000};
        nanosleep(&d, NULL);
        waited += 0.02;
    }
    printf("monitor: live server: %d exports by one key; suspended (403) %.2f s after the last\n",
           exported, waited);
    assert_int_equal(status, 403);
    assert_true(exported >= 21);
    /* the alert is stored right after its action (the suspension) is: poll with a bound */
    json_t *j = NULL, *al = NULL;
    for (int k = 0; k < 500; k++) {
        json_decref(j);
        assert_int_equal(http_status("GET", "/v1/admin/alerts", admin, &body), 200);
        j = json_loads(body, 0, NULL);
        al = json_object_get(j, "alerts");
        if (json_array_size(al) >= 1) break;
        free(body);
        body = NULL;
        struct timespec d = {0, 10 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    if (json_array_size(al) < 1) {
        fprintf(stderr, "alerts: %s\n", body);
        char *mb = NULL;
        http_status("GET", "/metrics", admin, &mb);
        fprintf(stderr, "metrics: %s\n", mb ? strstr(mb, "privguide_alerts") : "");
        free(mb);
    }
    free(body);
    assert_true(json_array_size(al) >= 1);
    json_t *a0 = json_array_get(al, 0);
    assert_string_equal(json_string_value(json_object_get(a0, "rule")), "export_burst");
    assert_string_equal(json_string_value(json_object_get(a0, "action")), "suspended");
    assert_string_equal(json_string_value(json_object_get(a0, "state")), "open");
    char cr[48];
    snprintf(cr, sizeof cr, "key:%s", pr.key_id);
    assert_string_equal(json_string_value(json_object_get(a0, "credential")), cr);
    assert_true(json_array_size(json_object_get(a0, "evidence")) >= 20);
    json_int_t aid = json_integer_value(json_object_get(a0, "id"));
    json_decref(j);
    assert_int_equal(http_status("GET", "/v1/admin/alerts?state=bogus", admin, NULL), 400);
    assert_int_equal(http_status("GET", "/metrics", admin, &body), 200);
    assert_non_null(strstr(body, "privguide_alerts_total{rule=\"export_burst\"} 1"));
    free(body);
    snprintf(path, sizeof path, "/v1/admin/alerts/%lld/ack", (long long)aid);
    assert_int_equal(http_status("POST", path, admin, NULL), 200);
    assert_int_equal(http_status("POST", "/v1/admin/alerts/999/ack", admin, NULL), 404);
    assert_int_equal(http_status("GET", "/v1/admin/alerts", admin, &body), 200);
    assert_non_null(strstr(body, "{\"alerts\":[]}"));
    free(body);
    assert_int_equal(http_status("GET", "/v1/admin/alerts?state=all", admin, &body), 200);
    assert_non_null(strstr(body, "\"acknowledged\""));
    free(body);
    /* the admin override */
    snprintf(path, sizeof path, "/v1/admin/credentials/%s/resume", pr.key_id);
    assert_int_equal(http_status("POST", path, admin, NULL), 200);
    assert_int_equal(http_status("GET", "/v1/whoami", rogue, NULL), 200);
    assert_int_equal(pvg_server_stop(srv, 1000, &err), PVG_OK);
    pvg_server_free(srv);
    pvg_auth_credential_free(admin);
    pvg_auth_credential_free(rogue);
    pvg_auth_credential_free(other);
    rm_dir();
}

int main(void)
{
    if (pvg_init() != PVG_OK) return 1;
    setvbuf(stdout, NULL, _IONBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_contract),
        cmocka_unit_test(test_tokens_leave_room_for_keys),
        cmocka_unit_test(test_idle_states_evicted),
        cmocka_unit_test(test_normal_week_no_false_alarms),
        cmocka_unit_test(test_attack_scraping_key),
        cmocka_unit_test(test_attack_scraping_known_key),
        cmocka_unit_test(test_attack_delete_burst),
        cmocka_unit_test(test_attack_token_addresses),
        cmocka_unit_test(test_attack_dp_averaging),
        cmocka_unit_test(test_attack_credential_stuffing),
        cmocka_unit_test(test_attack_budget_drain),
        cmocka_unit_test(test_attack_off_hours),
        cmocka_unit_test(test_store_alerts_and_suspension),
        cmocka_unit_test(test_scan_stored_log),
        cmocka_unit_test(test_server_burst_suspends),
        cmocka_unit_test(test_explain_and_rerank_are_personal_reads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
