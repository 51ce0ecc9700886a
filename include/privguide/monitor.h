/*
 * privguide/monitor.h - access monitoring: rules over the audit log, the
 * budget ledger and request observations that flag abnormal access as it
 * happens, the alerts they raise, and the suspension of a credential.
 *
 * A pvg_monitor is an in-memory rule engine. It is fed, in time order:
 *   - audit entries (pvg_monitor_feed_audit: actor, action, subject
 *     pseudonym, detail, seq, ts, exactly as the log holds them);
 *   - request observations a server makes that the audit log does not hold
 *     (pvg_monitor_feed_request: failed authentications and the client
 *     address a shopper token came from; the address is hashed on entry and
 *     never kept or shown);
 *   - budget charges (pvg_monitor_feed_charge: a ledger release's time and
 *     epsilon).
 * Each feed costs O(1) amortised (see docs/monitor.md for every rule's
 * window, threshold and the baseline it learns from the fed history). When a
 * rule fires, an alert is queued (pvg_monitor_next_alert) with its evidence:
 * the sequence numbers of the audit entries that made it fire. The engine
 * never writes: the caller stores alerts (pvg_monitor_alert_store) and
 * applies the action the rule asks for.
 *
 * Alerts and suspensions are kept in the store (its meta table: one JSON
 * document of alerts, one entry per suspended credential), so every server
 * and CLI on the data dir sees the same: pvg_auth_check refuses a suspended
 * credential (PVG_ERR_STATE) until an admin resumes it. Alerts hold no
 * personal data beyond what the audit log holds already (credential ids,
 * counts; never an external id or a client address).
 */
#ifndef PRIVGUIDE_MONITOR_H
#define PRIVGUIDE_MONITOR_H

#include <privguide/audit.h>
#include <privguide/common.h>
#include <privguide/store.h>

#ifdef __cplusplus
extern "C" {
#endif
#pragma GCC visibility push(default) /* the API; everything else is hidden */

/* The rules. */
typedef enum pvg_monitor_rule {
    PVG_MON_MANY_SHOPPERS = 0, /* one credential reads many distinct shoppers' data */
    PVG_MON_EXPORT_BURST,      /* a burst of exports or deletions by one credential */
    PVG_MON_TOKEN_ADDRESSES,   /* one shopper token used from many client addresses */
    PVG_MON_DP_REPEAT,         /* near-identical DP queries repeated (averaging attack) */
    PVG_MON_AUTH_FAILURES,     /* a storm of failed authentications */
    PVG_MON_BUDGET_DRAIN,      /* the privacy budget spent faster than its usual rate */
    PVG_MON_OFF_HOURS,         /* an API key used outside its usual hours (UTC) */
    PVG_MON_N_RULES
} pvg_monitor_rule;

/* "many_shoppers", "export_burst", "token_addresses", "dp_repeat",
 * "auth_failures", "budget_drain", "off_hours"; "?" out of range. Static. */
const char *pvg_monitor_rule_name(pvg_monitor_rule r);

/* What a rule asks the caller to do with the credential. */
typedef enum pvg_monitor_action {
    PVG_MON_ACT_NONE = 0,
    PVG_MON_ACT_RATE_LIMIT = 1, /* throttle the credential (the server: in memory) */
    PVG_MON_ACT_SUSPEND = 2     /* suspend it in the store until an admin resumes it */
} pvg_monitor_action;

/* "none", "rate_limited", "suspended". Static. */
const char *pvg_monitor_action_name(pvg_monitor_action a);

/* One rule's settings. A rule fires when its count over the trailing
 * `window_s` seconds exceeds max(floor, factor * baseline); the baseline is
 * learnt from the history fed (docs/monitor.md). */
typedef struct pvg_monitor_rule_config {
    int enabled;
    double window_s;
    double floor;
    double factor;
    pvg_monitor_action action; /* applied to "key:"/"token:" credentials only */
    const char *severity;      /* "warning" or "critical" (static string) */
} pvg_monitor_rule_config;

typedef struct pvg_monitor_config {
    pvg_monitor_rule_config rules[PVG_MON_N_RULES];
    double history_s;       /* baselines cover the last history_s..2*history_s seconds */
    int min_windows;        /* own closed windows before a credential's own baseline counts */
    int off_hours_min_days; /* days of use before a key's usual hours are trusted */
    double budget_total;    /* the store's total epsilon (0: unknown; floor then absolute) */
    double throttle_rate;   /* requests/s a rate-limited credential keeps */
} pvg_monitor_config;

/* Fills cfg with the defaults documented in docs/monitor.md. */
void pvg_monitor_config_init(pvg_monitor_config *cfg);

typedef struct pvg_monitor pvg_monitor;

/* A new engine (pvg_monitor_free) with a copy of cfg (NULL: defaults).
 * Errors: PVG_ERR_INVALID (a window <= 0, a factor < 0), PVG_ERR_NOMEM. */
pvg_status pvg_monitor_new(const pvg_monitor_config *cfg, pvg_monitor **out,
                           pvg_error *err) PVG_WARN_UNUSED;
void pvg_monitor_free(pvg_monitor *m); /* NULL ok */

/* While learning (on: 1) the engine updates counts and baselines but raises
 * nothing: for replaying history already examined (a server's start). */
void pvg_monitor_set_learning(pvg_monitor *m, int on);

/* Feeds one audit entry (borrowed for the call). Entries must come in seq
 * order; an entry with seq <= the last one fed is ignored (returns 0).
 * Returns how many alerts it raised, or -1 out of memory (the entry is then
 * not counted in the rules that could not grow). */
int pvg_monitor_feed_audit(pvg_monitor *m, const pvg_audit_entry *e);

/* A request observation of a server (strings borrowed for the call). */
typedef struct pvg_monitor_request {
    int64_t ts;
    const char *actor;   /* "token:<id>", "key:<id>"; NULL or "" for a failed authentication */
    const char *address; /* the client address (hashed on entry; NULL: unknown) */
    int auth_failed;     /* 1: the request failed authentication */
} pvg_monitor_request;

/* Feeds one request observation. Returns alerts raised or -1 (as above). */
int pvg_monitor_feed_request(pvg_monitor *m, const pvg_monitor_request *q);

/* Feeds one budget charge (a ledger release) at time ts. release_id must
 * increase; older ids are ignored. Returns alerts raised or -1. */
int pvg_monitor_feed_charge(pvg_monitor *m, int64_t release_id, int64_t ts, double epsilon);

/* Sets the store's total epsilon (the budget_drain floor is a fraction of
 * it; 0: unknown). */
void pvg_monitor_set_budget_total(pvg_monitor *m, double total_epsilon);

/* The last audit seq and ledger release id fed (0: none). */
int64_t pvg_monitor_last_seq(const pvg_monitor *m);
int64_t pvg_monitor_last_release(const pvg_monitor *m);

#define PVG_MON_EVIDENCE_MAX 32

/* An alert. Strings are NUL-terminated in place. */
typedef struct pvg_monitor_alert {
    int64_t id; /* 0 until stored */
    pvg_monitor_rule rule;
    char severity[16];
    char credential[48]; /* "key:<id>", "token:<id>", "cli", or "" (no credential) */
    int64_t opened;      /* seconds since the epoch (the time of the last evidence) */
    int acknowledged;
    char acked_by[48];
    int64_t acked_at;
    char summary[240];
    size_t n_evidence;
    int64_t evidence[PVG_MON_EVIDENCE_MAX]; /* audit seqs, oldest first */
    pvg_monitor_action action;              /* asked by the rule; after storing: applied */
    double count, threshold;                /* what fired: count > threshold */
} pvg_monitor_alert;

/* Pops the oldest queued alert into *out: 1, or 0 when none is queued. */
int pvg_monitor_next_alert(pvg_monitor *m, pvg_monitor_alert *out);

/* Alerts raised so far per rule (counts[PVG_MON_N_RULES]). */
void pvg_monitor_counts(const pvg_monitor *m, long long counts[PVG_MON_N_RULES]);

/* The alert as JSON (the HTTP contract's object): new string, free() it.
 * NULL out of memory. */
char *pvg_monitor_alert_json(const pvg_monitor_alert *a);

/* ---- the stored alerts and suspensions ---------------------------------- */

/* Stores a new alert: sets a->id to the next alert id. An alert of the same
 * rule and credential whose first evidence is the same entry is stored only
 * once (a re-scan of the same log): then a->id gets the stored one and
 * *is_new (may be NULL) 0. The store keeps the last 2000 alerts (the oldest
 * acknowledged go first). Errors: PVG_ERR_BUSY, PVG_ERR_IO, PVG_ERR_CORRUPT
 * (the stored document is not valid), PVG_ERR_NOMEM. */
pvg_status pvg_monitor_alert_store(pvg_store *s, pvg_monitor_alert *a, int *is_new,
                                   pvg_error *err) PVG_WARN_UNUSED;

/* Calls fn for every stored alert, oldest first (only the open ones unless
 * all). fn returns non-zero to stop (PVG_ERR_ABORTED). Errors as above. */
pvg_status pvg_monitor_alerts_foreach(pvg_store *s, int all,
                                      int (*fn)(void *ctx, const pvg_monitor_alert *a), void *ctx,
                                      pvg_error *err) PVG_WARN_UNUSED;

/* Acknowledges alert `id` on behalf of actor ("cli", "key:<id>"; borrowed)
 * and writes an audit entry ("alert_ack"). Acknowledging twice is fine.
 * Errors: PVG_ERR_NOT_FOUND (no such alert), those above. */
pvg_status pvg_monitor_alert_ack(pvg_store *s, int64_t id, const char *actor,
                                 pvg_error *err) PVG_WARN_UNUSED;

/* Suspends credential key_id (16 hex digits) in the store, with a reason
 * (borrowed, may be NULL), and writes an audit entry ("credential_suspend",
 * actor borrowed). From then on pvg_auth_check refuses it. Errors:
 * PVG_ERR_NOT_FOUND (no such credential), PVG_ERR_INVALID, store errors. */
pvg_status pvg_monitor_suspend(pvg_store *s, const char *key_id, const char *actor,
                               const char *reason, pvg_error *err) PVG_WARN_UNUSED;

/* Lifts a suspension (the admin override), audited ("credential_resume").
 * Errors: PVG_ERR_NOT_FOUND (no such credential), PVG_ERR_STATE (it is not
 * suspended), store errors. */
pvg_status pvg_monitor_resume(pvg_store *s, const char *key_id, const char *actor,
                              pvg_error *err) PVG_WARN_UNUSED;

/* *suspended = 1 when key_id is suspended; reason (may be NULL) gets the
 * stored reason. Errors: store errors. */
pvg_status pvg_monitor_is_suspended(pvg_store *s, const char *key_id, int *suspended, char *reason,
                                    size_t reason_len, pvg_error *err) PVG_WARN_UNUSED;

/* What an offline scan saw. */
typedef struct pvg_monitor_scan_report {
    long long entries, charges;
    long long raised;                   /* alerts raised by the scan */
    long long stored;                   /* of which new in the store (not seen before) */
    long long by_rule[PVG_MON_N_RULES]; /* raised per rule */
} pvg_monitor_scan_report;

/* Evaluates the rules over the whole stored audit log and ledger, in time
 * order (cfg NULL: defaults, with the store's budget total), and stores the
 * alerts raised (pvg_monitor_alert_store; no action is applied: a scan
 * looks back). Errors: store errors, PVG_ERR_NOMEM. */
pvg_status pvg_monitor_scan(pvg_store *s, const pvg_monitor_config *cfg,
                            pvg_monitor_scan_report *rep, pvg_error *err) PVG_WARN_UNUSED;

#pragma GCC visibility pop
#ifdef __cplusplus
}
#endif
#endif
