/*
 * alert_store.c - the stored side of access monitoring (include/privguide/
 * monitor.h): alerts as one JSON document in the store's meta table (key
 * "monitor.alerts", changed in a write transaction so several processes keep
 * one list), suspended credentials as one meta entry each
 * ("monitor.suspended.<id>": "<ts> <reason>", "" once resumed), and the
 * offline scan of the stored audit log and ledger.
 */
#include <privguide/auth.h>
#include <privguide/ledger.h>
#include <privguide/monitor.h>

#include "store/store_internal.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ALERTS_KEY "monitor.alerts"
#define SUSPEND_PREFIX "monitor.suspended."
#define ALERTS_KEEP 2000

static pvg_status load_doc(pvg_store *s, json_t **out, pvg_error *err)
{
    pvg_backend *b = pvg_store_backend(s);
    char *text = NULL;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = b->ops->meta_get(b, ALERTS_KEY, &text, &e);
    if (st == PVG_ERR_NOT_FOUND || (st == PVG_OK && !text[0])) {
        free(text);
        *out = json_pack("{s:I, s:[]}", "next", (json_int_t)1, "alerts");
        return *out ? PVG_OK : pvg_error_set(err, PVG_ERR_NOMEM, "alerts: out of memory");
    }
    if (st != PVG_OK) {
        if (err) *err = e;
        return st;
    }
    json_error_t je;
    json_t *doc = json_loads(text, 0, &je);
    free(text);
    if (!doc || !json_is_array(json_object_get(doc, "alerts")) ||
        !json_is_integer(json_object_get(doc, "next"))) {
        json_decref(doc);
        return pvg_error_set(err, PVG_ERR_CORRUPT,
                             "meta %s: want {\"next\": N, \"alerts\": [...]} (byte %d: %s)",
                             ALERTS_KEY, je.position, doc ? "wrong shape" : je.text);
    }
    *out = doc;
    return PVG_OK;
}

static pvg_status save_doc(pvg_store *s, json_t *doc, pvg_error *err)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    if (!text) return pvg_error_set(err, PVG_ERR_NOMEM, "alerts: out of memory");
    pvg_backend *b = pvg_store_backend(s);
    pvg_status st = b->ops->meta_set(b, ALERTS_KEY, text, err);
    free(text);
    return st;
}

static json_t *alert_to_json(const pvg_monitor_alert *a)
{
    json_t *ev = json_array();
    for (size_t i = 0; i < a->n_evidence; i++)
        json_array_append_new(ev, json_integer((json_int_t)a->evidence[i]));
    return json_pack("{s:I, s:s, s:s, s:s, s:I, s:b, s:s, s:I, s:s, s:o, s:s, s:f, s:f}", "id",
                     (json_int_t)a->id, "rule", pvg_monitor_rule_name(a->rule), "severity",
                     a->severity, "credential", a->credential, "opened", (json_int_t)a->opened,
                     "acked", a->acknowledged, "acked_by", a->acked_by, "acked_at",
                     (json_int_t)a->acked_at, "summary", a->summary, "evidence", ev, "action",
                     pvg_monitor_action_name(a->action), "count", a->count, "threshold",
                     a->threshold);
}

static void copy_str(char *dst, size_t len, json_t *v)
{
    snprintf(dst, len, "%s", json_is_string(v) ? json_string_value(v) : "");
}

static void alert_from_json(json_t *o, pvg_monitor_alert *a)
{
    memset(a, 0, sizeof *a);
    a->id = (int64_t)json_integer_value(json_object_get(o, "id"));
    const char *rule = json_string_value(json_object_get(o, "rule"));
    a->rule = PVG_MON_N_RULES;
    for (int r = 0; r < PVG_MON_N_RULES; r++)
        if (rule && strcmp(rule, pvg_monitor_rule_name((pvg_monitor_rule)r)) == 0)
            a->rule = (pvg_monitor_rule)r;
    copy_str(a->severity, sizeof a->severity, json_object_get(o, "severity"));
    copy_str(a->credential, sizeof a->credential, json_object_get(o, "credential"));
    a->opened = (int64_t)json_integer_value(json_object_get(o, "opened"));
    a->acknowledged = json_is_true(json_object_get(o, "acked"));
    copy_str(a->acked_by, sizeof a->acked_by, json_object_get(o, "acked_by"));
    a->acked_at = (int64_t)json_integer_value(json_object_get(o, "acked_at"));
    copy_str(a->summary, sizeof a->summary, json_object_get(o, "summary"));
    json_t *ev = json_object_get(o, "evidence");
    for (size_t i = 0; i < json_array_size(ev) && i < PVG_MON_EVIDENCE_MAX; i++)
        a->evidence[a->n_evidence++] = (int64_t)json_integer_value(json_array_get(ev, i));
    const char *act = json_string_value(json_object_get(o, "action"));
    a->action = act && strcmp(act, "suspended") == 0      ? PVG_MON_ACT_SUSPEND
                : act && strcmp(act, "rate_limited") == 0 ? PVG_MON_ACT_RATE_LIMIT
                                                          : PVG_MON_ACT_NONE;
    a->count = json_number_value(json_object_get(o, "count"));
    a->threshold = json_number_value(json_object_get(o, "threshold"));
}

/* Runs fn(doc) inside a write transaction on the alerts document; saves it
 * when fn returns PVG_OK and *dirty is set. */
static pvg_status with_doc(pvg_store *s,
                           pvg_status (*fn)(void *ctx, json_t *doc, int *dirty, pvg_error *err),
                           void *ctx, pvg_error *err)
{
    pvg_status st = pvg_store_begin(s, err);
    if (st != PVG_OK) return st;
    json_t *doc = NULL;
    int dirty = 0;
    st = load_doc(s, &doc, err);
    if (st == PVG_OK) st = fn(ctx, doc, &dirty, err);
    if (st == PVG_OK && dirty) st = save_doc(s, doc, err);
    json_decref(doc);
    if (st == PVG_OK) return pvg_store_commit(s, err);
    pvg_store_rollback(s);
    return st;
}

typedef struct store_ctx {
    pvg_monitor_alert *a;
    int is_new;
} store_ctx;

static pvg_status do_store(void *ctx, json_t *doc, int *dirty, pvg_error *err)
{
    store_ctx *c = ctx;
    pvg_monitor_alert *a = c->a;
    json_t *list = json_object_get(doc, "alerts");
    size_t i;
    json_t *o;
    const char *rule = pvg_monitor_rule_name(a->rule);
    json_array_foreach(list, i, o)
    {
        json_t *ev = json_object_get(o, "evidence");
        const char *r = json_string_value(json_object_get(o, "rule"));
        const char *cr = json_string_value(json_object_get(o, "credential"));
        int same_first =
            a->n_evidence
                ? json_array_size(ev) && json_integer_value(json_array_get(ev, 0)) == a->evidence[0]
                : json_array_size(ev) == 0 &&
                      json_integer_value(json_object_get(o, "opened")) == a->opened;
        if (r && cr && strcmp(r, rule) == 0 && strcmp(cr, a->credential) == 0 && same_first) {
            a->id = (int64_t)json_integer_value(json_object_get(o, "id"));
            c->is_new = 0;
            return PVG_OK;
        }
    }
    json_int_t next = json_integer_value(json_object_get(doc, "next"));
    a->id = (int64_t)next;
    json_t *j = alert_to_json(a);
    if (!j || json_array_append_new(list, j) != 0)
        return pvg_error_set(err, PVG_ERR_NOMEM, "alerts: out of memory");
    json_object_set_new(doc, "next", json_integer(next + 1));
    /* keep the last ALERTS_KEEP: the oldest acknowledged go first */
    while (json_array_size(list) > ALERTS_KEEP) {
        size_t drop = 0;
        json_array_foreach(list, i, o) if (json_is_true(json_object_get(o, "acked")))
        {
            drop = i;
            break;
        }
        json_array_remove(list, drop);
    }
    c->is_new = 1;
    *dirty = 1;
    return PVG_OK;
}

pvg_status pvg_monitor_alert_store(pvg_store *s, pvg_monitor_alert *a, int *is_new, pvg_error *err)
{
    if (!s || !a) return pvg_error_set(err, PVG_ERR_INVALID, "alert store: NULL argument");
    store_ctx c = {a, 0};
    pvg_status st = with_doc(s, do_store, &c, err);
    if (is_new) *is_new = st == PVG_OK && c.is_new;
    return st;
}

pvg_status pvg_monitor_alerts_foreach(pvg_store *s, int all,
                                      int (*fn)(void *ctx, const pvg_monitor_alert *a), void *ctx,
                                      pvg_error *err)
{
    if (!s || !fn) return pvg_error_set(err, PVG_ERR_INVALID, "alerts: NULL argument");
    json_t *doc = NULL;
    pvg_status st = load_doc(s, &doc, err);
    if (st != PVG_OK) return st;
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(doc, "alerts"), i, o)
    {
        pvg_monitor_alert a;
        alert_from_json(o, &a);
        if (!all && a.acknowledged) continue;
        if (fn(ctx, &a)) {
            st = pvg_error_set(err, PVG_ERR_ABORTED, "alerts: stopped by the caller");
            break;
        }
    }
    json_decref(doc);
    return st;
}

typedef struct ack_ctx {
    int64_t id;
    const char *actor;
    int64_t now;
} ack_ctx;

static pvg_status do_ack(void *ctx, json_t *doc, int *dirty, pvg_error *err)
{
    ack_ctx *c = ctx;
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(doc, "alerts"), i, o)
    {
        if (json_integer_value(json_object_get(o, "id")) != c->id) continue;
        if (json_is_true(json_object_get(o, "acked"))) return PVG_OK;
        json_object_set_new(o, "acked", json_true());
        json_object_set_new(o, "acked_by", json_string(c->actor));
        json_object_set_new(o, "acked_at", json_integer((json_int_t)c->now));
        *dirty = 1;
        return PVG_OK;
    }
    return pvg_error_set(err, PVG_ERR_NOT_FOUND, "no alert with id %lld", (long long)c->id);
}

static pvg_status audit_note(pvg_store *s, const char *actor, const char *action,
                             const char *detail, pvg_error *err)
{
    pvg_audit_record rec = {0, actor && actor[0] ? actor : "cli", action, "", detail};
    return pvg_audit_append(s, &rec, NULL, err);
}

pvg_status pvg_monitor_alert_ack(pvg_store *s, int64_t id, const char *actor, pvg_error *err)
{
    if (!s || id <= 0) return pvg_error_set(err, PVG_ERR_INVALID, "alert ack: want an alert id");
    /* the alert must exist before anything is recorded */
    json_t *doc = NULL;
    pvg_status st = load_doc(s, &doc, err);
    if (st != PVG_OK) return st;
    int found = 0;
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(doc, "alerts"), i,
                       o) if (json_integer_value(json_object_get(o, "id")) == id) found = 1;
    json_decref(doc);
    if (!found)
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "no alert with id %lld", (long long)id);
    char detail[64];
    snprintf(detail, sizeof detail, "alert=%lld", (long long)id);
    st = audit_note(s, actor, "alert_ack", detail, err);
    if (st != PVG_OK) return st;
    ack_ctx c = {id, actor && actor[0] ? actor : "cli", pvg_store_now(s)};
    return with_doc(s, do_ack, &c, err);
}

/* ---- suspensions ------------------------------------------------------------ */

static pvg_status check_id(pvg_store *s, const char *key_id, pvg_error *err)
{
    if (!key_id || strlen(key_id) != PVG_AUTH_ID_HEX)
        return pvg_error_set(err, PVG_ERR_INVALID,
                             "credential id: want %d hex digits, got \"%.40s\"", PVG_AUTH_ID_HEX,
                             key_id ? key_id : "");
    for (const char *p = key_id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return pvg_error_set(err, PVG_ERR_INVALID,
                                 "credential id: want lower-case hex digits, got \"%.40s\"",
                                 key_id);
    pvg_backend *b = pvg_store_backend(s);
    pvg_backend_cred c;
    pvg_status st = b->ops->cred_get(b, key_id, &c, err);
    sodium_memzero(c.secret_hash, sizeof c.secret_hash);
    if (st == PVG_ERR_NOT_FOUND)
        return pvg_error_set(err, PVG_ERR_NOT_FOUND, "no credential with id %s", key_id);
    return st;
}

pvg_status pvg_monitor_is_suspended(pvg_store *s, const char *key_id, int *suspended, char *reason,
                                    size_t reason_len, pvg_error *err)
{
    *suspended = 0;
    if (reason && reason_len) reason[0] = 0;
    if (!s || !key_id) return pvg_error_set(err, PVG_ERR_INVALID, "suspended: NULL argument");
    char key[64];
    snprintf(key, sizeof key, SUSPEND_PREFIX "%.20s", key_id);
    pvg_backend *b = pvg_store_backend(s);
    char *v = NULL;
    pvg_error e;
    pvg_error_clear(&e);
    pvg_status st = b->ops->meta_get(b, key, &v, &e);
    if (st == PVG_ERR_NOT_FOUND) return PVG_OK;
    if (st != PVG_OK) {
        if (err) *err = e;
        return st;
    }
    if (v[0]) {
        *suspended = 1;
        const char *sp = strchr(v, ' ');
        if (reason && reason_len) snprintf(reason, reason_len, "%s", sp ? sp + 1 : "");
    }
    free(v);
    return PVG_OK;
}

pvg_status pvg_monitor_suspend(pvg_store *s, const char *key_id, const char *actor,
                               const char *reason, pvg_error *err)
{
    if (!s) return pvg_error_set(err, PVG_ERR_INVALID, "suspend: NULL store");
    pvg_status st = check_id(s, key_id, err);
    if (st != PVG_OK) return st;
    char detail[300];
    snprintf(detail, sizeof detail, "credential=%s reason=%.200s", key_id,
             reason && reason[0] ? reason : "by an admin");
    char key[64], val[300];
    snprintf(key, sizeof key, SUSPEND_PREFIX "%s", key_id);
    snprintf(val, sizeof val, "%lld %.200s", (long long)pvg_store_now(s),
             reason && reason[0] ? reason : "by an admin");
    pvg_backend *b = pvg_store_backend(s);
    /* the audit entry and the suspension in one transaction: the log never
     * names a suspension that was not made */
    if ((st = pvg_store_begin(s, err)) != PVG_OK) return st;
    st = audit_note(s, actor, "credential_suspend", detail, err);
    if (st == PVG_OK) st = b->ops->meta_set(b, key, val, err);
    if (st == PVG_OK) return pvg_store_commit(s, err);
    pvg_store_rollback(s);
    return st;
}

pvg_status pvg_monitor_resume(pvg_store *s, const char *key_id, const char *actor, pvg_error *err)
{
    if (!s) return pvg_error_set(err, PVG_ERR_INVALID, "resume: NULL store");
    pvg_status st = check_id(s, key_id, err);
    if (st != PVG_OK) return st;
    int sus = 0;
    st = pvg_monitor_is_suspended(s, key_id, &sus, NULL, 0, err);
    if (st != PVG_OK) return st;
    if (!sus) return pvg_error_set(err, PVG_ERR_STATE, "credential %s is not suspended", key_id);
    char detail[64];
    snprintf(detail, sizeof detail, "credential=%s", key_id);
    char key[64];
    snprintf(key, sizeof key, SUSPEND_PREFIX "%s", key_id);
    pvg_backend *b = pvg_store_backend(s);
    if ((st = pvg_store_begin(s, err)) != PVG_OK) return st;
    st = audit_note(s, actor, "credential_resume", detail, err);
    if (st == PVG_OK) st = b->ops->meta_set(b, key, "", err);
    if (st == PVG_OK) return pvg_store_commit(s, err);
    pvg_store_rollback(s);
    return st;
}

/* ---- the offline scan --------------------------------------------------------- */

typedef struct charge {
    int64_t id, ts;
    double eps;
} charge;

typedef struct scan_ctx {
    pvg_monitor *m;
    charge *ch;
    size_t n_ch, cap_ch, next_ch;
    int nomem;
    long long entries;
} scan_ctx;

static int collect_charge(void *ctx, const pvg_ledger_release *r)
{
    scan_ctx *c = ctx;
    if (c->n_ch == c->cap_ch) {
        size_t cap = c->cap_ch ? c->cap_ch * 2 : 256;
        charge *t = realloc(c->ch, cap * sizeof *t);
        if (!t) {
            c->nomem = 1;
            return 1;
        }
        c->ch = t;
        c->cap_ch = cap;
    }
    c->ch[c->n_ch++] = (charge){r->id, r->created_at, r->epsilon};
    return 0;
}

static int scan_entry(void *ctx, const pvg_audit_entry *e)
{
    scan_ctx *c = ctx;
    /* charges made up to this entry's time come first (time order) */
    while (c->next_ch < c->n_ch && c->ch[c->next_ch].ts <= e->ts) {
        const charge *h = &c->ch[c->next_ch++];
        if (pvg_monitor_feed_charge(c->m, h->id, h->ts, h->eps) < 0) c->nomem = 1;
    }
    if (pvg_monitor_feed_audit(c->m, e) < 0) c->nomem = 1;
    c->entries++;
    return c->nomem;
}

pvg_status pvg_monitor_scan(pvg_store *s, const pvg_monitor_config *cfg,
                            pvg_monitor_scan_report *rep, pvg_error *err)
{
    if (!s || !rep) return pvg_error_set(err, PVG_ERR_INVALID, "monitor scan: NULL argument");
    memset(rep, 0, sizeof *rep);
    pvg_monitor_config c;
    if (cfg) {
        c = *cfg;
    } else {
        pvg_monitor_config_init(&c);
        pvg_ledger_state ls;
        if (pvg_ledger_state_get(s, &ls, NULL) == PVG_OK && ls.has_total)
            c.budget_total = ls.total_epsilon;
    }
    pvg_monitor *m = NULL;
    pvg_status st = pvg_monitor_new(&c, &m, err);
    if (st != PVG_OK) return st;
    scan_ctx x = {0};
    x.m = m;
    st = pvg_ledger_releases_foreach(s, NULL, collect_charge, &x, err);
    if (st == PVG_OK && !x.nomem) st = pvg_audit_foreach(s, 0, 0, scan_entry, &x, err);
    while (st == PVG_OK && !x.nomem && x.next_ch < x.n_ch) {
        const charge *h = &x.ch[x.next_ch++];
        if (pvg_monitor_feed_charge(m, h->id, h->ts, h->eps) < 0) x.nomem = 1;
    }
    if (x.nomem) st = pvg_error_set(err, PVG_ERR_NOMEM, "monitor scan: out of memory");
    rep->entries = x.entries;
    rep->charges = (long long)x.n_ch;
    pvg_monitor_alert a;
    while (st == PVG_OK && pvg_monitor_next_alert(m, &a)) {
        rep->raised++;
        if ((unsigned)a.rule < PVG_MON_N_RULES) rep->by_rule[a.rule]++;
        a.action = PVG_MON_ACT_NONE; /* a scan looks back: it acts on nothing */
        int is_new = 0;
        st = pvg_monitor_alert_store(s, &a, &is_new, err);
        if (is_new) rep->stored++;
    }
    free(x.ch);
    pvg_monitor_free(m);
    return st;
}
